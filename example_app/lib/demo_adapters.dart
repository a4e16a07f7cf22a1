// Simulated providers for the demo: pure Dart stand-ins for vendor SDKs (no media), whose
// failures are switched on from the UI. A real app wraps agora_rtc_engine or
// zego_express_engine instead; see ADAPTERS.md.

import 'dart:async';

import 'package:streamguard/streamguard.dart';

/// A provider that takes [latency] to join and fails when told to.
class SimulatedAdapter extends ProviderAdapter {
  SimulatedAdapter(
    this.name, {
    this.latency = const Duration(milliseconds: 250),
    this.parallel = false,
  });

  /// The provider's name in the registry.
  final String name;

  /// How long a join takes.
  Duration latency;

  /// Whether this SDK can run a stream while another provider does too.
  final bool parallel;

  /// The next this many start/join calls fail with [failKind].
  int failNext = 0;

  /// The kind of the scripted failures.
  ProviderErrorKind failKind = ProviderErrorKind.timeout;

  /// An outage: every call fails and the local probe reports the edge unreachable.
  bool down = false;

  /// Streams this "SDK" is carrying now.
  final Set<String> live = <String>{};

  /// The registry config it was last initialized with (app id...).
  Map<String, Object?> config = const {};

  @override
  bool get supportsParallelSessions => parallel;

  @override
  Future<void> initialize(ProviderInfo provider) async {
    config = provider.config;
  }

  @override
  Future<void> startStream(String streamId) => _open(streamId);

  @override
  Future<void> joinStream(String streamId) => _open(streamId);

  @override
  Future<void> leaveStream(String streamId) async {
    live.remove(streamId);
  }

  @override
  Future<void> probe() async {
    if (down) throw ProviderException.network('$name edge unreachable');
  }

  Future<void> _open(String streamId) async {
    await Future<void>.delayed(latency);
    if (down) throw ProviderException.network('$name unreachable');
    if (failNext > 0) {
      failNext--;
      throw ProviderException(failKind, '$name: simulated ${failKind.name}');
    }
    live.add(streamId);
  }
}

/// The three providers of the demo, preferred first.
List<SimulatedAdapter> demoAdapters() => [
      SimulatedAdapter('agora'),
      SimulatedAdapter('zegocloud', latency: const Duration(milliseconds: 350)),
      SimulatedAdapter('webrtc', latency: const Duration(milliseconds: 500)),
    ];
