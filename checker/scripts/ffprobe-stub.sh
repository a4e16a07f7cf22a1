#!/bin/sh
# A stand-in for ffprobe (same arguments, URL last) for tests and the scale benchmark; the URL
# decides the answer: "slow" hangs, "dead" fails, anything else is a 1280x720 h264 stream.
#   STUB_DELAY  seconds to take before answering (e.g. 0.05)
#   STUB_LOG    file to append "start|end URL NANOS PID" lines to (to check concurrency limits)
#   STUB_ARGV   directory to write each call's arguments to (file named by PID, NUL-separated)
for url; do :; done
[ -n "$STUB_ARGV" ] && printf '%s\0' "$@" > "$STUB_ARGV/$$"
[ -n "$STUB_LOG" ] && echo "start $url $(date +%s%N) $$" >> "$STUB_LOG"
case "$url" in
  *slow*) exec sleep 60 ;;
esac
[ -n "$STUB_DELAY" ] && sleep "$STUB_DELAY"
[ -n "$STUB_LOG" ] && echo "end $url $(date +%s%N) $$" >> "$STUB_LOG"
case "$url" in
  *dead*) echo "$url: Connection refused" >&2; exit 1 ;;
esac
echo '{"streams":[{"codec_type":"video","codec_name":"h264","width":1280,"height":720,"avg_frame_rate":"25/1"},{"codec_type":"audio","codec_name":"aac"}],"format":{"format_name":"mpegts","bit_rate":"2500000"}}'
