// The plugin's code is the Rust static library that the podspec force-loads into this pod;
// CocoaPods needs one source file to build the pod at all.
int streamguard_plugin_placeholder(void) { return 0; }
