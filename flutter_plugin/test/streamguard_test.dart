// Unit tests of the Dart wrapper (lib/streamguard.dart) over a fake native layer: how adapters
// are bridged (exceptions to error records), how events are shared and closed, how errors
// and configs pass through. No native library is loaded.
//
// Needs a Flutter SDK: `flutter test` in flutter_plugin/. Not run on the machine where the
// Rust side is verified (no Dart SDK there); see README.md.

import 'dart:async';

import 'package:flutter_test/flutter_test.dart';
import 'package:streamguard/src/rust/api/manager.dart' as native;
import 'package:streamguard/src/rust/frb_generated.dart';
import 'package:streamguard/streamguard.dart';

/// The adapter closures the wrapper hands to the native layer.
class Registered {
  Registered(this.parallel, this.initialize, this.start, this.join, this.leave,
      this.probe);
  final bool parallel;
  final FutureOr<ProviderError?> Function(ProviderInfo) initialize;
  final FutureOr<ProviderError?> Function(String) start;
  final FutureOr<ProviderError?> Function(String) join;
  final FutureOr<ProviderError?> Function(String) leave;
  final FutureOr<ProviderError?> Function() probe;
}

/// Stands in for the Rust object: records what the wrapper asks for.
class FakeNative implements native.StreamingProviderManager {
  ManagerConfig? config;
  final adapters = <String, Registered>{};
  final recorded = <(String, ProviderError)>[];
  final nativeEvents = StreamController<StreamEvent>();
  int eventsCalls = 0;
  bool shutDown = false;
  StreamguardError? failStart;

  @override
  Future<void> registerAdapter({
    required String name,
    required bool supportsParallelSessions,
    required FutureOr<ProviderError?> Function(ProviderInfo) initialize,
    required FutureOr<ProviderError?> Function(String) startStream,
    required FutureOr<ProviderError?> Function(String) joinStream,
    required FutureOr<ProviderError?> Function(String) leaveStream,
    required FutureOr<ProviderError?> Function() probe,
  }) async {
    adapters[name] = Registered(supportsParallelSessions, initialize,
        startStream, joinStream, leaveStream, probe);
  }

  @override
  Future<SessionInfo> startStream({required String streamId}) async {
    final error = failStart;
    if (error != null) throw error;
    return SessionInfo(
      streamId: streamId,
      role: Role.publisher,
      provider: adapters.keys.first,
      state: SessionState.live,
      attempts: 1,
      migrations: 0,
      standby: const [],
    );
  }

  @override
  Future<void> recordError(
      {required String streamId, required ProviderError error}) async {
    recorded.add((streamId, error));
  }

  @override
  Future<Stream<StreamEvent>> events() async {
    eventsCalls++;
    return nativeEvents.stream;
  }

  @override
  Future<void> shutdown() async {
    shutDown = true;
    // The native stream ends once the engine has stopped.
    await nativeEvents.close();
  }

  @override
  dynamic noSuchMethod(Invocation invocation) => super.noSuchMethod(invocation);
}

class FakeApi implements RustLibApi {
  FakeNative next = FakeNative();

  @override
  Future<native.StreamingProviderManager>
      crateApiManagerStreamingProviderManagerCreate(
          {required ManagerConfig config}) async {
    next.config = config;
    return next;
  }

  @override
  dynamic noSuchMethod(Invocation invocation) => super.noSuchMethod(invocation);
}

class ScriptedAdapter extends ProviderAdapter {
  Object? throwOnStart;
  ProviderInfo? initializedWith;

  @override
  Future<void> initialize(ProviderInfo provider) async =>
      initializedWith = provider;

  @override
  Future<void> startStream(String streamId) async {
    final e = throwOnStart;
    if (e != null) throw e;
  }

  @override
  Future<void> joinStream(String streamId) async {}

  @override
  Future<void> leaveStream(String streamId) async {}
}

class ParallelAdapter extends ScriptedAdapter {
  @override
  bool get supportsParallelSessions => true;

  @override
  Future<void> probe() async {}
}

StreamEvent event(EventType kind, {String? streamId, int atMs = 0}) =>
    StreamEvent(atMs: atMs, kind: kind, streamId: streamId, active: const []);

void main() {
  final api = FakeApi();
  setUpAll(() => initStreamguardForTest(api));
  setUp(() => api.next = FakeNative());

  test('the generated config defaults are the engine defaults of the README', () {
    const c = ManagerConfig(baseUrl: 'https://api.example.com/api');
    expect(c.maxAttempts, 3);
    expect(c.attemptsPerProvider, 2);
    expect(c.healthCheckIntervalMs, 30000);
    expect(c.failureThreshold, 3);
    expect(c.suspectRecheckDelayMs, 1000);
    expect(c.maxUnhealthyForMs, 30000);
    expect(c.requestTimeoutMs, 5000);
    expect(c.adapterTimeoutMs, 10000);
    expect(c.backoffBaseMs, 300);
    expect(c.backoffCapMs, 7000);
    expect(c.operationDeadlineMs, 45000);
    expect(c.failback, isFalse);
    expect(c.pushUpdates, isTrue);
    expect(c.authToken, isNull);
    expect(c.waitForCapacity, isFalse);
    expect(c.capacityMaxWaitMs, 600000);
    expect(c.capacityLeaseTtlMs, 60000);
    expect(c.maxTotalStreams, isNull);
    expect(c.standbyProviders, 0);
    expect(c.waitForLiveMs, 0);
  });

  test('create passes the config to the engine', () async {
    const config = ManagerConfig(baseUrl: 'https://x.example/api', maxAttempts: 5);
    await StreamingProviderManager.create(config);
    expect(api.next.config, config);
  });

  test('adapter outcomes become error records, never exceptions', () async {
    final manager = await StreamingProviderManager.create(
        const ManagerConfig(baseUrl: 'https://x.example/api'));
    final adapter = ScriptedAdapter();
    await manager.registerAdapter('agora', adapter);
    final bridged = api.next.adapters['agora']!;
    expect(bridged.parallel, isFalse);

    expect(await bridged.start('s1'), isNull);

    adapter.throwOnStart = const ProviderException.timeout('join timed out');
    final timeout = await bridged.start('s1');
    expect(timeout?.kind, ProviderErrorKind.timeout);
    expect(timeout?.message, 'join timed out');

    adapter.throwOnStart = StateError('sdk crashed');
    final internal = await bridged.start('s1');
    expect(internal?.kind, ProviderErrorKind.internal);
    expect(internal?.message, contains('sdk crashed'));

    // The default probe says "not supported", so only the registry's health check is used.
    final probe = await bridged.probe();
    expect(probe?.kind, ProviderErrorKind.notSupported);

    const info = ProviderInfo(
        name: 'agora',
        isActive: true,
        priority: 1,
        configJson: '{"appId":"abc","region":"eu"}');
    expect(await bridged.initialize(info), isNull);
    expect(adapter.initializedWith?.config, {'appId': 'abc', 'region': 'eu'});
  });

  test('parallel support and a custom probe are passed through', () async {
    final manager = await StreamingProviderManager.create(
        const ManagerConfig(baseUrl: 'https://x.example/api'));
    await manager.registerAdapter('zegocloud', ParallelAdapter());
    final bridged = api.next.adapters['zegocloud']!;
    expect(bridged.parallel, isTrue);
    expect(await bridged.probe(), isNull);
  });

  test('recordError reports the exception as the engine records it', () async {
    final manager = await StreamingProviderManager.create(
        const ManagerConfig(baseUrl: 'https://x.example/api'));
    await manager.recordError(
        's1', const ProviderException.unauthorized('token expired'));
    final (streamId, error) = api.next.recorded.single;
    expect(streamId, 's1');
    expect(error,
        const ProviderError(kind: ProviderErrorKind.unauthorized, message: 'token expired'));
  });

  test('engine errors reach the caller as StreamguardError', () async {
    final manager = await StreamingProviderManager.create(
        const ManagerConfig(baseUrl: 'https://x.example/api'));
    await manager.registerAdapter('agora', ScriptedAdapter());
    api.next.failStart = const StreamguardError(
      kind: StreamguardErrorKind.allAttemptsFailed,
      message: 'all 3 attempts failed',
      attempts: [
        Attempt(
            provider: 'agora',
            number: 1,
            error: ProviderError(kind: ProviderErrorKind.timeout, message: 't')),
      ],
    );
    await expectLater(
      manager.startStream('s1'),
      throwsA(isA<StreamguardError>()
          .having((e) => e.kind, 'kind', StreamguardErrorKind.allAttemptsFailed)
          .having((e) => e.attempts.single.provider, 'provider', 'agora')
          .having((e) => e.toString(), 'toString', contains('allAttemptsFailed'))),
    );
  });

  test('a full provider reaches the caller as noCapacity naming it', () async {
    final manager = await StreamingProviderManager.create(
        const ManagerConfig(baseUrl: 'https://x.example/api'));
    await manager.registerAdapter('agora', ScriptedAdapter());
    api.next.failStart = const StreamguardError(
      kind: StreamguardErrorKind.noCapacity,
      message: 'no free stream slot on ["agora"] after waiting 0ns',
      attempts: [],
      providers: ['agora'],
      waitedMs: 0,
    );
    await expectLater(
      manager.startStream('s1'),
      throwsA(isA<StreamguardError>()
          .having((e) => e.kind, 'kind', StreamguardErrorKind.noCapacity)
          .having((e) => e.providers, 'providers', ['agora'])
          .having((e) => e.waitedMs, 'waitedMs', 0)),
    );
  });

  test('events: one native subscription, made by create, shared by every listener and '
      'closed by shutdown',
      () async {
    final manager = await StreamingProviderManager.create(
        const ManagerConfig(baseUrl: 'https://x.example/api'));
    final a = <EventType>[];
    final b = <EventType>[];
    final aDone = Completer<void>();
    manager.events.listen((e) => a.add(e.kind), onDone: aDone.complete);
    manager.events.listen((e) => b.add(e.kind));
    expect(api.next.eventsCalls, 1);

    api.next.nativeEvents
      ..add(event(EventType.attemptStarted, streamId: 's1'))
      ..add(event(EventType.sessionStateChanged, streamId: 's1'));
    await manager.shutdown();
    await aDone.future.timeout(const Duration(seconds: 5));
    expect(a, [EventType.attemptStarted, EventType.sessionStateChanged]);
    expect(b, a);
    expect(api.next.shutDown, isTrue);
  });

  test('ProviderException kinds match their constructors', () {
    expect(const ProviderException.network('x').kind, ProviderErrorKind.network);
    expect(const ProviderException.unavailable('x').kind,
        ProviderErrorKind.unavailable);
    expect(const ProviderException.quotaExceeded('x').kind,
        ProviderErrorKind.quotaExceeded);
    expect(const ProviderException.invalidStream('x').kind,
        ProviderErrorKind.invalidStream);
    final back = ProviderException.fromError(
        const ProviderError(kind: ProviderErrorKind.internal, message: 'm'));
    expect(back.toError().kind, ProviderErrorKind.internal);
    expect(back.toString(), 'ProviderException.internal: m');
  });
}
