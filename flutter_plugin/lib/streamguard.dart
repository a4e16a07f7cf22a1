/// Streamguard for Flutter: a failover engine for live streaming.
///
/// Wrap each vendor SDK (Agora, ZegoCloud, LiveKit...) in a [ProviderAdapter]; the
/// [StreamingProviderManager] decides which provider carries each stream: bounded retries with
/// jittered backoff, priority failover, health monitoring that confirms an outage in seconds,
/// live migration of running streams, cool-downs, and an [StreamingProviderManager.events]
/// stream of every decision. The engine is the Rust crate `streamguard`, loaded through
/// flutter_rust_bridge; this file is the Dart face of it, with the same names as the Rust,
/// Kotlin, Swift and Python APIs.
///
/// ```dart
/// final manager = await StreamingProviderManager.create(
///     const ManagerConfig(baseUrl: 'https://api.example.com/api'));
/// await manager.registerAdapter('agora', AgoraAdapter(engine));
/// manager.events.listen((e) => debugPrint('${e.kind.name} ${e.streamId}'));
/// final session = await manager.startStream('stream-42'); // or joinStream for viewers
/// print('live on ${session.provider}');
/// await manager.endStream('stream-42');
/// await manager.shutdown();
/// ```
library;

import 'dart:async';
import 'dart:convert';
import 'dart:io' show Platform;

import 'package:flutter/foundation.dart' show visibleForTesting;
import 'package:flutter_rust_bridge/flutter_rust_bridge_for_generated.dart'
    show ExternalLibrary;

import 'src/rust/api/manager.dart' as native;
import 'src/rust/api/types.dart';
import 'src/rust/frb_generated.dart' show RustLib, RustLibApi;

export 'src/rust/api/types.dart';

Future<void>? _initialized;

/// Loads the native library. [StreamingProviderManager.create] calls it; call it earlier
/// (e.g. in `main`) to load the library at a moment of your choosing. Idempotent.
///
/// By default the library is looked up where the plugin's build puts it: linked into the
/// plugin's framework (or the app) on iOS and macOS, `libstreamguard_flutter.so` on Android
/// and Linux, `streamguard_flutter.dll` on Windows. Pass [externalLibrary] to load it from
/// elsewhere (e.g. `ExternalLibrary.open(path)` in tests on the host).
Future<void> initStreamguard({ExternalLibrary? externalLibrary}) {
  return _initialized ??= RustLib.init(
    externalLibrary: externalLibrary ?? _platformLibrary(),
  ).catchError((Object error, StackTrace stack) {
    _initialized = null; // let a later call try again
    Error.throwWithStackTrace(error, stack);
  });
}

/// Routes every native call to [api] instead of loading the library (tests without the
/// native library).
@visibleForTesting
void initStreamguardForTest(RustLibApi api) {
  RustLib.initMock(api: api);
  _initialized = Future<void>.value();
}

ExternalLibrary? _platformLibrary() {
  if (Platform.isIOS || Platform.isMacOS) {
    // The podspec force-loads the Rust static library into the plugin's pod: that is the
    // framework `streamguard.framework` when the app uses frameworks (Flutter's default
    // Podfile), and the app binary itself when it links pods statically.
    try {
      return ExternalLibrary.open('streamguard.framework/streamguard');
    } on Object {
      // Not a framework build: the symbols are in the process.
    }
    return ExternalLibrary.process(iKnowHowToUseIt: true);
  }
  // flutter_rust_bridge's default: libstreamguard_flutter.so (Android: from jniLibs; Linux:
  // from the bundle's lib/), streamguard_flutter.dll next to the executable on Windows.
  return null;
}

/// What an adapter throws, and what SDK callbacks report through
/// [StreamingProviderManager.recordError]. The [kind], not the message, drives the engine:
///
/// * [ProviderErrorKind.timeout], [ProviderErrorKind.network],
///   [ProviderErrorKind.unavailable]: transient, the same provider is retried after a
///   jittered backoff;
/// * [ProviderErrorKind.unauthorized], [ProviderErrorKind.quotaExceeded],
///   [ProviderErrorKind.notSupported], [ProviderErrorKind.internal]: provider-fatal, the
///   next provider is tried at once;
/// * [ProviderErrorKind.invalidStream]: request-fatal, the operation stops.
///
/// Anything else an adapter throws counts as [ProviderErrorKind.internal].
class ProviderException implements Exception {
  /// An error of [kind] with the SDK's [message].
  const ProviderException(this.kind, this.message);

  /// A call that did not finish in time.
  const ProviderException.timeout(String message)
      : this(ProviderErrorKind.timeout, message);

  /// A network error between the device and the provider.
  const ProviderException.network(String message)
      : this(ProviderErrorKind.network, message);

  /// The provider is temporarily unable to serve.
  const ProviderException.unavailable(String message)
      : this(ProviderErrorKind.unavailable, message);

  /// Credentials (app id, token) were refused.
  const ProviderException.unauthorized(String message)
      : this(ProviderErrorKind.unauthorized, message);

  /// The provider's quota or capacity is exhausted.
  const ProviderException.quotaExceeded(String message)
      : this(ProviderErrorKind.quotaExceeded, message);

  /// The stream itself is invalid (unknown, banned): no provider can serve it.
  const ProviderException.invalidStream(String message)
      : this(ProviderErrorKind.invalidStream, message);

  /// The adapter does not implement this operation.
  const ProviderException.notSupported(String message)
      : this(ProviderErrorKind.notSupported, message);

  /// An unexpected failure inside the adapter.
  const ProviderException.internal(String message)
      : this(ProviderErrorKind.internal, message);

  /// The same error as reported in events and attempts.
  factory ProviderException.fromError(ProviderError error) =>
      ProviderException(error.kind, error.message);

  /// What kind of failure this is.
  final ProviderErrorKind kind;

  /// Detail from the vendor SDK.
  final String message;

  /// This error as the engine records it.
  ProviderError toError() => ProviderError(kind: kind, message: message);

  @override
  String toString() => 'ProviderException.${kind.name}: $message';
}

/// The app's wrapper around one vendor SDK. Extend it once per SDK and register an instance
/// per provider name with [StreamingProviderManager.registerAdapter].
///
/// Streamguard decides when and where; the adapter only does what it is told. Complete the
/// returned future when the SDK has really joined (or left), and throw a [ProviderException]
/// whose kind says what went wrong. Every call is bounded by
/// [ManagerConfig.adapterTimeoutMs], so a call that never completes fails the attempt, not
/// the manager. Calls arrive on the isolate that registered the adapter.
abstract class ProviderAdapter {
  /// Prepare the SDK for this provider's registry entry ([ProviderInfo.config] holds its app
  /// id, region...). Called before the first use of the provider and again whenever the
  /// registry's entry for it changed.
  Future<void> initialize(ProviderInfo provider);

  /// Start publishing [streamId] (the broadcaster side).
  Future<void> startStream(String streamId);

  /// Start watching [streamId] (the viewer side).
  Future<void> joinStream(String streamId);

  /// Leave [streamId]. Called exactly once for every successful start or join.
  Future<void> leaveStream(String streamId);

  /// A local health check of the provider (e.g. a ping to its edge), run alongside the
  /// registry's health endpoint. The default has none.
  Future<void> probe() async {
    throw const ProviderException.notSupported('probe');
  }

  /// True if the same stream can run on this provider and another one at once, which lets a
  /// planned migration start on the new provider before leaving the old (make-before-break).
  /// Read once, when the adapter is registered.
  bool get supportsParallelSessions => false;
}

/// The registry's provider configuration, decoded.
extension ProviderInfoConfig on ProviderInfo {
  /// [ProviderInfo.configJson] as a map (empty if the registry sent none).
  Map<String, Object?> get config {
    final decoded = jsonDecode(configJson);
    return decoded is Map<String, Object?> ? decoded : const <String, Object?>{};
  }
}

/// The failover engine. Create one per app with [create], register an adapter per provider,
/// then start or join streams. Every method throws a [StreamguardError] on failure (its
/// [StreamguardError.kind] says which, [StreamguardError.attempts] lists failed attempts;
/// for [StreamguardErrorKind.noCapacity], [StreamguardError.providers] names the providers
/// that were full).
class StreamingProviderManager {
  StreamingProviderManager._(this._native);

  final native.StreamingProviderManager _native;

  /// Fed by one native subscription made in [create], so a listener sees every event
  /// emitted after it started listening, even those of calls made right after [create].
  final StreamController<StreamEvent> _events =
      StreamController<StreamEvent>.broadcast();
  StreamSubscription<StreamEvent>? _nativeEvents;

  /// Validates [config] (a [StreamguardError] of kind
  /// [StreamguardErrorKind.invalidConfig] names the first bad field) and starts the engine.
  /// Loads the native library first if [initStreamguard] was not called.
  static Future<StreamingProviderManager> create(ManagerConfig config) async {
    await initStreamguard();
    final manager = StreamingProviderManager._(
      await native.StreamingProviderManager.create(config: config),
    );
    // Completes once the engine-side subscription exists.
    final events = await manager._native.events();
    manager._nativeEvents = events.listen(
      manager._events.add,
      onError: manager._events.addError,
      // The native stream ends after shutdown (or release), once every event emitted
      // before it was delivered.
      onDone: manager._events.close,
    );
    return manager;
  }

  /// Registers [adapter] for the provider the registry lists as [name], replacing any
  /// earlier one. Providers without an adapter are skipped.
  Future<void> registerAdapter(String name, ProviderAdapter adapter) {
    return _native.registerAdapter(
      name: name,
      supportsParallelSessions: adapter.supportsParallelSessions,
      initialize: (provider) => _settle(() => adapter.initialize(provider)),
      startStream: (streamId) => _settle(() => adapter.startStream(streamId)),
      joinStream: (streamId) => _settle(() => adapter.joinStream(streamId)),
      leaveStream: (streamId) => _settle(() => adapter.leaveStream(streamId)),
      probe: () => _settle(adapter.probe),
    );
  }

  /// Goes live as publisher of [streamId], with retries and failover. Starting a session
  /// that is already live returns it unchanged. When every provider is at its `maxStreams`
  /// limit it throws [StreamguardErrorKind.noCapacity] at once, or, with
  /// [ManagerConfig.waitForCapacity], waits up to [ManagerConfig.capacityMaxWaitMs] for the
  /// first free slot.
  Future<SessionInfo> startStream(String streamId) =>
      _native.startStream(streamId: streamId);

  /// Watches [streamId] as a viewer, with retries and failover.
  Future<SessionInfo> joinStream(String streamId) =>
      _native.joinStream(streamId: streamId);

  /// Ends a session: stops its monitoring and leaves its provider. Cancels a start that is
  /// still running. Ending a finished session does nothing.
  Future<void> endStream(String streamId) =>
      _native.endStream(streamId: streamId);

  /// Reports an error from the vendor SDK's own callbacks (connection lost, token expired)
  /// for [streamId]. Transient kinds trigger an immediate health check that confirms or
  /// clears it; provider-fatal kinds move every stream off the provider at once; a
  /// request-fatal kind fails this session.
  Future<void> recordError(String streamId, ProviderException error) =>
      _native.recordError(streamId: streamId, error: error.toError());

  /// Connectivity changed (Wi-Fi to cellular, VPN): pending retries happen now, cool-downs
  /// are forgotten and providers are re-checked.
  Future<void> networkChanged() => _native.networkChanged();

  /// Re-reads the provider list now; live sessions migrate if the change calls for it.
  Future<List<ProviderInfo>> refreshProviders() => _native.refreshProviders();

  /// The provider list in use (the last good one read from the registry).
  Future<List<ProviderInfo>> providers() => _native.providers();

  /// A snapshot of one session, or null if it is unknown.
  Future<SessionInfo?> session(String streamId) =>
      _native.session(streamId: streamId);

  /// Snapshots of every known session.
  Future<List<SessionInfo>> sessions() => _native.sessions();

  /// Statistics of every provider known from the list or from use, preferred first.
  Future<List<ProviderStats>> providerStats() => _native.providerStats();

  /// Background tasks still running in the engine (zero after [shutdown]).
  Future<int> taskCount() => _native.taskCount();

  /// Every engine decision, in order, from the moment of listening: attempts, failovers,
  /// migrations, health changes, list changes, registry errors, waits for a free stream slot
  /// ([EventType.waitingForCapacity]) and session states. A
  /// broadcast stream (listen before starting a stream to see all of its events); it closes
  /// after [shutdown], once the events emitted before it were delivered.
  Stream<StreamEvent> get events => _events.stream;

  /// Leaves every provider and stops every engine task. Idempotent. Afterwards every call
  /// but the read-only ones throws a [StreamguardError] of kind
  /// [StreamguardErrorKind.shutDown].
  Future<void> shutdown() => _native.shutdown();

  /// Releases the native handle. Call it after [shutdown]; a manager released without
  /// [shutdown] leaves its providers in the background (and its event stream closes).
  void dispose() {
    _nativeEvents?.cancel();
    _nativeEvents = null;
    if (!_events.isClosed) _events.close();
    _native.dispose();
  }
}

/// Runs one adapter call and turns its outcome into what the engine expects: null on
/// success, the error otherwise. Nothing may escape: a Dart exception cannot cross into Rust.
Future<ProviderError?> _settle(Future<void> Function() call) async {
  try {
    await call();
    return null;
  } on ProviderException catch (e) {
    return e.toError();
  } on ProviderError catch (e) {
    return e;
  } catch (e) {
    return ProviderError(kind: ProviderErrorKind.internal, message: '$e');
  }
}
