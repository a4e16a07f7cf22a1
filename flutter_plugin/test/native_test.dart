// End-to-end through the real native library: Dart adapters, the Rust engine, a provider
// registry served by this test over HTTP on loopback.
//
// Needs a Flutter SDK and the library built for the host first:
//   (cd rust && cargo build --release)
//   flutter test test/native_test.dart
// (STREAMGUARD_LIB=/path/to/libstreamguard_flutter.so overrides where it is loaded from.)
// Skipped when the library is not there. Not run on the machine where the Rust side is
// verified (no Dart SDK there); rust/tests/facade.rs covers the same scenarios through the
// same Rust entry points.
@Tags(['native'])
library;

import 'dart:async';
import 'dart:convert';
import 'dart:io';

import 'package:flutter_rust_bridge/flutter_rust_bridge_for_generated.dart'
    show ExternalLibrary;
import 'package:flutter_test/flutter_test.dart';
import 'package:streamguard/streamguard.dart';

String libraryPath() {
  final fromEnv = Platform.environment['STREAMGUARD_LIB'];
  if (fromEnv != null) return fromEnv;
  final name = Platform.isWindows
      ? 'streamguard_flutter.dll'
      : Platform.isMacOS
          ? 'libstreamguard_flutter.dylib'
          : 'libstreamguard_flutter.so';
  return 'rust/target/release/$name';
}

/// The registry contract of the seed app, served from this isolate.
class Registry {
  Registry._(this._server);

  final HttpServer _server;
  final providers = <Map<String, Object?>>[
    {'name': 'agora', 'isActive': true, 'priority': 1, 'config': {'appId': 'a'}},
    {'name': 'zegocloud', 'isActive': true, 'priority': 2, 'config': {'appId': 'z'}},
  ];
  final unhealthy = <String>{};

  String get baseUrl => 'http://127.0.0.1:${_server.port}/api';

  static Future<Registry> start() async {
    final registry =
        Registry._(await HttpServer.bind(InternetAddress.loopbackIPv4, 0));
    registry._server.listen(registry._handle);
    return registry;
  }

  void _handle(HttpRequest request) {
    final path = request.uri.path;
    Object? body;
    if (path == '/api/streaming/providers') {
      body = {
        'success': true,
        'data': {'providers': providers},
      };
    } else {
      final match =
          RegExp(r'^/api/streaming/providers/([^/]+)/health$').firstMatch(path);
      if (match != null) {
        final name = match.group(1)!;
        final healthy = !unhealthy.contains(name);
        body = {
          'success': true,
          'data': {
            'healthy': healthy,
            'provider': name,
            'status': healthy ? 'active' : 'down',
          },
        };
      }
    }
    if (body == null) {
      request.response.statusCode = HttpStatus.notFound;
    } else {
      request.response.headers.contentType = ContentType.json;
      request.response.write(jsonEncode(body));
    }
    request.response.close();
  }

  Future<void> stop() => _server.close(force: true);
}

class FakeSdkAdapter extends ProviderAdapter {
  int failStarts = 0;
  final calls = <String>[];

  @override
  Future<void> initialize(ProviderInfo provider) async =>
      calls.add('init ${provider.config['appId']}');

  @override
  Future<void> startStream(String streamId) async {
    calls.add('start $streamId');
    if (failStarts > 0) {
      failStarts--;
      throw const ProviderException.timeout('join timed out');
    }
  }

  @override
  Future<void> joinStream(String streamId) async => calls.add('join $streamId');

  @override
  Future<void> leaveStream(String streamId) async =>
      calls.add('leave $streamId');
}

ManagerConfig fastConfig(String baseUrl) => ManagerConfig(
      baseUrl: baseUrl,
      healthCheckIntervalMs: 300,
      suspectRecheckDelayMs: 50,
      backoffBaseMs: 10,
      backoffCapMs: 40,
      providerRefreshIntervalMs: 300,
      providerListMaxAgeMs: 50,
      pushUpdates: false,
    );

Future<StreamEvent> next(Stream<StreamEvent> events, bool Function(StreamEvent) test) =>
    events.firstWhere(test).timeout(const Duration(seconds: 5));

void main() {
  final lib = libraryPath();
  final skip = File(lib).existsSync()
      ? null
      : 'native library not built ($lib): run `cargo build --release` in rust/';

  late Registry registry;
  late StreamingProviderManager manager;
  late FakeSdkAdapter agora;
  late FakeSdkAdapter zego;

  setUpAll(() async {
    if (skip == null) {
      await initStreamguard(externalLibrary: ExternalLibrary.open(lib));
    }
  });

  setUp(() async {
    if (skip != null) return;
    registry = await Registry.start();
    manager = await StreamingProviderManager.create(fastConfig(registry.baseUrl));
    agora = FakeSdkAdapter();
    zego = FakeSdkAdapter();
    await manager.registerAdapter('agora', agora);
    await manager.registerAdapter('zegocloud', zego);
  });

  tearDown(() async {
    if (skip != null) return;
    await manager.shutdown();
    expect(await manager.taskCount(), 0);
    manager.dispose();
    await registry.stop();
  });

  test('a start fails over after two timeouts thrown by a Dart adapter', () async {
    agora.failStarts = 2;
    final failover = next(manager.events, (e) => e.kind == EventType.failover);
    final session = await manager.startStream('s1');
    expect(session.provider, 'zegocloud');
    expect(session.attempts, 3);
    final e = await failover;
    expect((e.from, e.to, e.reason),
        ('agora', 'zegocloud', FailoverReason.retriesExhausted));
    expect(agora.calls, ['init a', 'start s1', 'start s1']);
    expect(zego.calls, ['init z', 'start s1']);
  }, skip: skip);

  test('a health outage migrates the live stream', () async {
    await manager.startStream('s1');
    final migrated =
        next(manager.events, (e) => e.kind == EventType.migrationFinished);
    registry.unhealthy.add('agora');
    final e = await migrated;
    expect((e.streamId, e.from, e.to), ('s1', 'agora', 'zegocloud'));
    expect(agora.calls, contains('leave s1'));
    final stats = await manager.providerStats();
    expect(stats.firstWhere((s) => s.provider == 'agora').status,
        HealthStatus.unhealthy);
  }, skip: skip);

  test('all providers down: one error listing every attempt', () async {
    agora.failStarts = 99;
    zego.failStarts = 99;
    await expectLater(
      manager.startStream('s1'),
      throwsA(isA<StreamguardError>()
          .having((e) => e.kind, 'kind', StreamguardErrorKind.allAttemptsFailed)
          .having((e) => e.attempts.length, 'attempts', 3)),
    );
  }, skip: skip);

  test('an SDK error reported from Dart moves the stream', () async {
    await manager.startStream('s1');
    final migrated =
        next(manager.events, (e) => e.kind == EventType.migrationFinished);
    await manager.recordError(
        's1', const ProviderException.unauthorized('token expired'));
    expect((await migrated).to, 'zegocloud');
  }, skip: skip);

  test('shutdown leaves every provider and closes the event stream', () async {
    final done = Completer<void>();
    manager.events.listen((_) {}, onDone: done.complete);
    await manager.startStream('s1');
    await manager.joinStream('s2');
    await manager.shutdown();
    expect(agora.calls, containsAll(['leave s1', 'leave s2']));
    await done.future.timeout(const Duration(seconds: 5));
    await expectLater(
      manager.startStream('s3'),
      throwsA(isA<StreamguardError>()
          .having((e) => e.kind, 'kind', StreamguardErrorKind.shutDown)),
    );
  }, skip: skip);
}
