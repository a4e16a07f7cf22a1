// The demo's state: one StreamingProviderManager, the simulated adapters, the in-app registry,
// and what the UI shows (current session, provider stats, the event timeline). Every button
// of the UI is one method here.

import 'dart:async';

import 'package:flutter/foundation.dart';
import 'package:streamguard/streamguard.dart';

import 'demo_adapters.dart';
import 'demo_registry.dart';

/// Short intervals so a demo outage is confirmed in seconds (defaults: 30 s checks).
ManagerConfig demoConfig(String baseUrl, {bool push = false}) => ManagerConfig(
      baseUrl: baseUrl,
      healthCheckIntervalMs: 3000,
      suspectRecheckDelayMs: 500,
      providerRefreshIntervalMs: 5000,
      providerListMaxAgeMs: 1000,
      cooldownBaseMs: 10000,
      pushUpdates: push,
    );

class DemoController extends ChangeNotifier {
  DemoController._(this.manager, this.adapters, this.registry);

  /// Starts the demo: the in-app registry (unless [registryUrl] names a real one), the
  /// manager and the three simulated providers.
  static Future<DemoController> start({String registryUrl = ''}) async {
    LocalRegistry? registry;
    var baseUrl = registryUrl;
    if (baseUrl.isEmpty) {
      registry = await LocalRegistry.start([
        RegistryEntry('agora', 1),
        RegistryEntry('zegocloud', 2),
        RegistryEntry('webrtc', 3),
      ]);
      baseUrl = registry.baseUrl;
    }
    final manager = await StreamingProviderManager.create(
        demoConfig(baseUrl, push: registry == null));
    return attach(manager, demoAdapters(), registry: registry);
  }

  /// Wires [adapters] into [manager] (tests pass their own manager).
  static Future<DemoController> attach(
    StreamingProviderManager manager,
    List<SimulatedAdapter> adapters, {
    LocalRegistry? registry,
  }) async {
    final controller = DemoController._(
        manager, {for (final a in adapters) a.name: a}, registry);
    for (final adapter in adapters) {
      await manager.registerAdapter(adapter.name, adapter);
    }
    controller._events = manager.events.listen(controller._onEvent);
    await controller.refresh();
    return controller;
  }

  final StreamingProviderManager manager;
  final Map<String, SimulatedAdapter> adapters;

  /// The in-app registry; null when a real one is used (its switches are hidden then).
  final LocalRegistry? registry;

  /// Newest first.
  final List<StreamEvent> timeline = [];
  List<ProviderStats> stats = const [];
  List<ProviderInfo> providers = const [];
  SessionInfo? session;
  String? lastError;
  bool busy = false;
  String streamId = 'demo-stream';
  StreamSubscription<StreamEvent>? _events;
  bool _disposed = false;

  static const _timelineLength = 200;

  ProviderStats? statsOf(String provider) {
    for (final s in stats) {
      if (s.provider == provider) return s;
    }
    return null;
  }

  // ----- the stream -----------------------------------------------------------------------

  Future<void> goLive() => _run(() => manager.startStream(streamId));

  Future<void> watch() => _run(() => manager.joinStream(streamId));

  Future<void> end() => _run(() => manager.endStream(streamId));

  Future<void> networkChanged() => _run(manager.networkChanged);

  // ----- breaking providers ---------------------------------------------------------------

  /// The next start/join on [provider] fails (a timeout: retried, then failed over).
  void failNextStart(String provider) {
    adapters[provider]!.failNext++;
    notifyListeners();
  }

  /// A provider outage: its SDK calls and local probe fail and the registry's health
  /// endpoint reports it down, so health checks confirm it and live streams migrate.
  void setOutage(String provider, bool down) {
    adapters[provider]!.down = down;
    registry?.entry(provider).healthy = !down;
    notifyListeners();
  }

  /// What an SDK callback does when the connection drops ([ProviderErrorKind.network],
  /// confirmed by an immediate check) or the token expires
  /// ([ProviderErrorKind.unauthorized], moves the stream at once).
  Future<void> reportSdkError(String provider, ProviderErrorKind kind) {
    final current = session;
    if (current == null || current.provider != provider) {
      lastError = 'no stream is live on $provider';
      notifyListeners();
      return Future<void>.value();
    }
    return _run(() => manager.recordError(current.streamId,
        ProviderException(kind, 'simulated $provider SDK callback')));
  }

  // ----- the registry, as an admin would change it ----------------------------------------

  Future<void> setActive(String provider, bool active) {
    registry?.entry(provider).active = active;
    return _run(manager.refreshProviders);
  }

  /// Makes [provider] the preferred one (lowest priority number).
  Future<void> prefer(String provider) {
    final reg = registry;
    if (reg == null) return Future<void>.value();
    final best =
        reg.entries.map((e) => e.priority).reduce((a, b) => a < b ? a : b);
    reg.entry(provider).priority = best - 1;
    return _run(manager.refreshProviders);
  }

  // ----- plumbing -------------------------------------------------------------------------

  Future<void> refresh() async {
    session = await manager.session(streamId);
    stats = await manager.providerStats();
    providers = await manager.providers();
    if (!_disposed) notifyListeners();
  }

  Future<void> _run(Future<Object?> Function() action) async {
    busy = true;
    lastError = null;
    notifyListeners();
    try {
      await action();
    } on StreamguardError catch (e) {
      lastError = e.message;
    } finally {
      busy = false;
      await refresh();
    }
  }

  void _onEvent(StreamEvent event) {
    timeline.insert(0, event);
    if (timeline.length > _timelineLength) timeline.removeLast();
    switch (event.kind) {
      case EventType.sessionStateChanged:
      case EventType.migrationFinished:
      case EventType.migrationFailed:
      case EventType.healthChanged:
      case EventType.providerListChanged:
        unawaited(refresh());
      default:
        if (!_disposed) notifyListeners();
    }
  }

  @override
  void dispose() {
    _disposed = true;
    unawaited(_close());
    super.dispose();
  }

  Future<void> _close() async {
    await _events?.cancel();
    await manager.shutdown();
    manager.dispose();
    await registry?.stop();
  }
}

/// One line of the timeline.
String describe(StreamEvent e) {
  final id = e.streamId == null ? '' : '[${e.streamId}] ';
  switch (e.kind) {
    case EventType.attemptStarted:
      return '$id${e.operation?.name} attempt ${e.attempt} on ${e.provider}';
    case EventType.attemptFailed:
      final retry = e.retryInMs == null ? '' : ', retry in ${e.retryInMs} ms';
      return '$id attempt ${e.attempt} on ${e.provider} failed: '
          '${e.error?.kind.name} (${e.error?.message})$retry';
    case EventType.failover:
      return '${id}failover ${e.from} → ${e.to ?? 'nothing left'} (${e.reason?.name})';
    case EventType.migrationStarted:
      return '${id}migrating off ${e.from} (${e.reason?.name}, ${e.strategy?.name})';
    case EventType.migrationFinished:
      return '${id}migrated ${e.from} → ${e.to} in ${e.durationMs} ms '
          '(gap ${e.gapMs} ms)';
    case EventType.migrationFailed:
      return '${id}migration off ${e.from} failed: ${e.message}'
          '${e.stillOn == null ? '' : ' (still on ${e.stillOn})'}';
    case EventType.healthChanged:
      return '${e.provider} ${e.healthFrom?.name} → ${e.healthTo?.name} '
          '(${e.consecutiveFailures} failures: ${e.message})';
    case EventType.providerListChanged:
      return 'providers: ${e.active.join(', ')}';
    case EventType.backendError:
      return 'registry error: ${e.message}';
    case EventType.waitingForCapacity:
      return '${id}all full (${e.providers.join(', ')}): waiting up to '
          '${e.maxWaitMs} ms for a slot';
    case EventType.sessionStateChanged:
      return '$id${e.stateFrom?.name} → ${e.stateTo?.name}'
          '${e.provider == null ? '' : ' on ${e.provider}'}';
    case EventType.placementChanged:
      return '${id}published on ${e.provider} (epoch ${e.epoch}'
          '${e.live == true ? '' : ', ended'})';
    case EventType.standbyPromoted:
      return '${id}standby ${e.to} promoted, ${e.from} left (epoch ${e.epoch})';
    case EventType.qualityChanged:
      return '${e.provider} quality ${e.qualityFrom?.name ?? 'new'} → '
          '${e.qualityTo?.name} (score ${e.score?.toStringAsFixed(0)})';
    case EventType.qualityLowered:
      return '${id}quality lowered to ${e.level?.name} on ${e.provider}';
    case EventType.audienceChanged:
      return '${id}audience on ${e.provider}: ${e.viewers} viewers'
          '${e.stalled == null ? '' : ', ${e.stalled} stalled'}'
          '${e.outage == true ? ' (outage)' : ''}';
  }
}
