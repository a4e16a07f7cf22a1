# The ios side of the streamguard FFI plugin: no Objective-C/Swift code, only the Rust library.
#
# A script phase runs tool/build_apple.sh before the pod compiles: cargo builds rust/ for the
# architectures Xcode is building and lipo merges them into ${BUILT_PRODUCTS_DIR}/
# libstreamguard_flutter.a. The static library is force-loaded into the pod's framework (Flutter's
# default Podfile says `use_frameworks!`), so every symbol Dart looks up is in
# streamguard.framework, which lib/streamguard.dart opens.
Pod::Spec.new do |s|
  s.name             = 'streamguard'
  s.version          = '0.1.0'
  s.summary          = 'Failover engine for live streaming (Rust core, Flutter FFI plugin).'
  s.description      = 'Retries, health monitoring and live migration across streaming providers.'
  s.homepage         = 'https://example.com/streamguard' # placeholder until published
  s.license          = { :type => 'Apache-2.0' }
  s.author           = { 'Streamguard' => 'streamguard@example.com' } # placeholder
  s.source           = { :path => '.' }
  s.source_files     = 'Classes/**/*'
  s.dependency 'Flutter'
  s.platform = :ios, '12.0'

  s.script_phase = {
    :name => 'Build Rust library streamguard_flutter',
    :script => 'sh "$PODS_TARGET_SRCROOT/../tool/build_apple.sh" ios',
    :execution_position => :before_compile,
    # An input that never exists: the phase runs on every build and cargo decides what is
    # up to date.
    :input_files => ['${BUILT_PRODUCTS_DIR}/streamguard_cargo_always_run'],
    :output_files => ['${BUILT_PRODUCTS_DIR}/libstreamguard_flutter.a'],
  }
  s.pod_target_xcconfig = {
    'DEFINES_MODULE' => 'YES',
    'EXCLUDED_ARCHS[sdk=iphonesimulator*]' => 'i386',
    'OTHER_LDFLAGS' => '-force_load ${BUILT_PRODUCTS_DIR}/libstreamguard_flutter.a',
  }
end
