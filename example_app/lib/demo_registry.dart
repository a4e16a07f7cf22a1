// A provider registry inside the app, on loopback, so the demo runs without a backend. It
// speaks the same contract as the seed app's backend and streamguard-registry:
//
//   GET /api/streaming/providers                → {"success":true,"data":{"providers":[...]}}
//   GET /api/streaming/providers/{name}/health  → {"success":true,"data":{"healthy":...}}
//
// The UI flips its entries (active, priority, healthy) like an admin would. Pass
// --dart-define=STREAMGUARD_REGISTRY=https://host/api to use a real registry instead.

import 'dart:convert';
import 'dart:io';

/// One registry entry.
class RegistryEntry {
  RegistryEntry(this.name, this.priority, {this.active = true});

  final String name;
  int priority;
  bool active;
  bool healthy = true;

  Map<String, Object?> toJson() => {
        'name': name,
        'isActive': active,
        'priority': priority,
        'config': {'appId': '$name-demo-app'},
      };
}

/// The registry, served from this isolate.
class LocalRegistry {
  LocalRegistry._(this._server, this.entries);

  final HttpServer _server;

  /// The entries, in the order they were added.
  final List<RegistryEntry> entries;

  /// What the manager's `baseUrl` should be.
  String get baseUrl => 'http://127.0.0.1:${_server.port}/api';

  /// Serve [entries] on a free loopback port.
  static Future<LocalRegistry> start(List<RegistryEntry> entries) async {
    final server = await HttpServer.bind(InternetAddress.loopbackIPv4, 0);
    final registry = LocalRegistry._(server, entries);
    server.listen(registry._handle);
    return registry;
  }

  RegistryEntry entry(String name) => entries.firstWhere((e) => e.name == name);

  void _handle(HttpRequest request) {
    final body = _answer(request.uri.path);
    if (body == null) {
      // No push channel here (GET .../events): the engine polls instead.
      request.response.statusCode = HttpStatus.notFound;
    } else {
      request.response.headers.contentType = ContentType.json;
      request.response.write(jsonEncode(body));
    }
    request.response.close();
  }

  Map<String, Object?>? _answer(String path) {
    if (path == '/api/streaming/providers') {
      return {
        'success': true,
        'data': {'providers': [for (final e in entries) e.toJson()]},
      };
    }
    final health =
        RegExp(r'^/api/streaming/providers/([^/]+)/health$').firstMatch(path);
    if (health != null) {
      final name = Uri.decodeComponent(health.group(1)!);
      final matches = entries.where((e) => e.name == name);
      if (matches.isEmpty) return null;
      final e = matches.first;
      return {
        'success': true,
        'data': {
          'healthy': e.healthy,
          'provider': e.name,
          'status': e.healthy ? 'active' : 'down',
        },
      };
    }
    return null;
  }

  Future<void> stop() => _server.close(force: true);
}
