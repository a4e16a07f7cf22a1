// Widget test of the demo UI, with the native engine replaced by a small Dart stand-in (so no
// native library is needed): the buttons drive the simulated adapters through the plugin's
// real Dart wrapper, and the page shows the current provider, errors and the timeline.
//
// Needs a Flutter SDK: `flutter test` in example_app/. Not run on the machine where the Rust
// side is verified (no Dart SDK there).

// ignore_for_file: implementation_imports

import 'dart:async';

import 'package:flutter/material.dart';
import 'package:flutter_test/flutter_test.dart';
import 'package:streamguard/src/rust/api/manager.dart' as native;
import 'package:streamguard/src/rust/frb_generated.dart';
import 'package:streamguard/streamguard.dart';
import 'package:streamguard_example/demo_adapters.dart';
import 'package:streamguard_example/demo_controller.dart';
import 'package:streamguard_example/main.dart';

typedef AdapterCall = FutureOr<ProviderError?> Function(String);

/// A few lines of failover, enough to drive the UI: providers in registration order, two
/// attempts per provider, three in all. The real engine is tested in Rust
/// (flutter_plugin/rust/tests/facade.rs).
class FakeEngine implements native.StreamingProviderManager {
  final _starts = <String, AdapterCall>{};
  final _leaves = <String, AdapterCall>{};
  final _events = StreamController<StreamEvent>();
  SessionInfo? _session;
  int _clock = 0;

  void _emit(EventType kind,
      {String? provider, String? from, String? to, SessionState? state}) {
    _events.add(StreamEvent(
      atMs: _clock += 100,
      kind: kind,
      streamId: 'demo-stream',
      provider: provider,
      from: from,
      to: to,
      stateTo: state,
      reason: kind == EventType.failover ? FailoverReason.retriesExhausted : null,
      active: const [],
    ));
  }

  @override
  Future<void> registerAdapter({
    required String name,
    required bool supportsParallelSessions,
    required FutureOr<ProviderError?> Function(ProviderInfo) initialize,
    required AdapterCall startStream,
    required AdapterCall joinStream,
    required AdapterCall leaveStream,
    required FutureOr<ProviderError?> Function() probe,
  }) async {
    _starts[name] = startStream;
    _leaves[name] = leaveStream;
  }

  @override
  Future<SessionInfo> startStream({required String streamId}) async {
    final attempts = <Attempt>[];
    final names = _starts.keys.toList();
    for (var i = 0; i < names.length && attempts.length < 3; i++) {
      for (var n = 0; n < 2 && attempts.length < 3; n++) {
        _emit(EventType.attemptStarted, provider: names[i]);
        final error = await _starts[names[i]]!(streamId);
        if (error == null) {
          _emit(EventType.sessionStateChanged,
              provider: names[i], state: SessionState.live);
          return _session = SessionInfo(
            streamId: streamId,
            role: Role.publisher,
            provider: names[i],
            state: SessionState.live,
            attempts: attempts.length + 1,
            migrations: 0,
            standby: const [],
          );
        }
        attempts.add(Attempt(
            provider: names[i], number: attempts.length + 1, error: error));
        _emit(EventType.attemptFailed, provider: names[i]);
      }
      if (attempts.length < 3 && i + 1 < names.length) {
        _emit(EventType.failover, from: names[i], to: names[i + 1]);
      }
    }
    throw StreamguardError(
      kind: StreamguardErrorKind.allAttemptsFailed,
      message: 'all ${attempts.length} attempts failed',
      attempts: attempts,
    );
  }

  @override
  Future<void> endStream({required String streamId}) async {
    final s = _session;
    if (s == null) return;
    await _leaves[s.provider]!(streamId);
    _session = SessionInfo(
      streamId: streamId,
      role: s.role,
      state: SessionState.ended,
      attempts: s.attempts,
      migrations: s.migrations,
      standby: const [],
    );
    _emit(EventType.sessionStateChanged, state: SessionState.ended);
  }

  @override
  Future<SessionInfo?> session({required String streamId}) async => _session;

  @override
  Future<List<ProviderStats>> providerStats() async => const [];

  @override
  Future<List<ProviderInfo>> providers() async => const [];

  @override
  Future<Stream<StreamEvent>> events() async => _events.stream;

  @override
  Future<void> shutdown() => _events.close();

  @override
  void dispose() {}

  @override
  dynamic noSuchMethod(Invocation invocation) => super.noSuchMethod(invocation);
}

class FakeApi implements RustLibApi {
  @override
  Future<native.StreamingProviderManager>
      crateApiManagerStreamingProviderManagerCreate(
              {required ManagerConfig config}) async =>
          FakeEngine();

  @override
  dynamic noSuchMethod(Invocation invocation) => super.noSuchMethod(invocation);
}

/// Lets the simulated SDK latencies (a few hundred ms each) pass on the test clock.
Future<void> settle(WidgetTester tester) async {
  for (var i = 0; i < 30; i++) {
    await tester.pump(const Duration(milliseconds: 100));
  }
}

void main() {
  setUpAll(() => initStreamguardForTest(FakeApi()));

  Future<DemoController> startApp(WidgetTester tester) async {
    // Tall enough that every provider card is on screen.
    tester.view.physicalSize = const Size(1200, 2400);
    tester.view.devicePixelRatio = 1.0;
    addTearDown(tester.view.reset);
    final manager = await StreamingProviderManager.create(
        const ManagerConfig(baseUrl: 'http://127.0.0.1:1/api'));
    final controller = await DemoController.attach(manager, demoAdapters());
    await tester.pumpWidget(
        StreamguardDemoApp(controller: Future.value(controller)));
    await tester.pump();
    return controller;
  }

  testWidgets('go live fails over from a broken provider and shows it',
      (tester) async {
    final controller = await startApp(tester);
    expect(find.text('Not started'), findsOneWidget);
    expect(find.byKey(const Key('provider-agora')), findsOneWidget);
    expect(find.byKey(const Key('provider-webrtc')), findsOneWidget);

    await tester.tap(find.byKey(const Key('fail-next-agora')));
    await tester.tap(find.byKey(const Key('fail-next-agora')));
    await tester.pump();
    expect(find.text('Fail next join (2 queued)'), findsOneWidget);

    await tester.tap(find.byKey(const Key('go-live')));
    await settle(tester);

    final current = tester.widget<Text>(find.byKey(const Key('current-provider')));
    expect(current.data, contains('live on zegocloud'));
    expect(find.textContaining('failover agora → zegocloud'), findsOneWidget);
    expect(controller.adapters['zegocloud']!.live, contains('demo-stream'));

    await tester.tap(find.byKey(const Key('end')));
    await settle(tester);
    expect(controller.adapters['zegocloud']!.live, isEmpty);
    expect(tester.widget<Text>(find.byKey(const Key('current-provider'))).data,
        startsWith('ended'));

    await tester.pumpWidget(const SizedBox());
    controller.dispose();
    await settle(tester);
  });

  testWidgets('every provider down: the error is shown, nothing is live',
      (tester) async {
    final controller = await startApp(tester);
    for (final name in ['agora', 'zegocloud', 'webrtc']) {
      await tester.tap(find.byKey(Key('outage-$name')));
    }
    await tester.pump();

    await tester.tap(find.byKey(const Key('go-live')));
    await settle(tester);

    expect(find.byKey(const Key('last-error')), findsOneWidget);
    expect(find.textContaining('all 3 attempts failed'), findsOneWidget);
    expect(controller.adapters.values.every((a) => a.live.isEmpty), isTrue);

    await tester.pumpWidget(const SizedBox());
    controller.dispose();
    await settle(tester);
  });
}
