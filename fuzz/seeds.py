#!/usr/bin/env python3
"""Writes the seed corpora (corpus/<target>/seed-*) from the fixtures of the ordinary tests.

Run once; what the fuzzer adds later goes into corpus/ too (kept small with `cargo fuzz cmin`).
The fixtures are copied from (file: test): rust-core/src/registry.rs (parses_the_seed_contract,
rejects_bad_shapes_with_typed_errors, parses_health, sse_parser_*), checker/tests/playlist.rs
(PLAYLIST), checker/src/m3u/tests.rs, checker/tests/cli.rs (ACCOUNTS), checker/src/probe.rs
(reads_video_audio_and_bitrate), registry/tests/api (telemetry, placement, admin bodies).
"""
import os

HERE = os.path.dirname(os.path.abspath(__file__))

SEEDS = {
    "provider_list": [
        b'{"success":true,"data":{"providers":[{"name":"agora","isActive":true,"priority":1,"config":{"appId":"x"}},'
        b'{"name":"zegocloud","isActive":false,"priority":2,"config":{},"maxStreams":5,"activeStreams":1,"extra":"ignored"}]}}',
        b'{"success":true,"data":{"providers":[{"name":"a","isActive":true,"priority":1},{"name":"a","isActive":true,"priority":2}]}}',
        b'{"success":true,"data":{"providers":[{"name":"a","isActive":true,"priority":1.5}]}}',
        b'{"success":false,"error":"db down"}',
        b"<html>",
    ],
    "health": [
        b'{"success":true,"data":{"healthy":false,"provider":"agora","status":"down"}}',
        b'{"success":true,"data":{"healthy":"no"}}',
        b'{"success":true,"data":{"healthy":true,"status":null}}',
    ],
    # Two bytes choose the chunking, the rest is the stream.
    "sse": [
        b"\x05\x00: keep-alive\r\nevent: providers\r\ndata: {\"a\":1}\r\n\r\nevent: health\ndata: line1\ndata: line2\n\ndata: plain\n\n",
        b"\x01\x07event: placement\ndata: {\"streamId\":\"s1\",\"provider\":\"zegocloud\",\"epoch\":2,\"standby\":[],\"live\":true}\n\n",
        b"\x10\x00event: health\ndata: {\"provider\":\"agora\",\"healthy\":false,\"status\":\"down\"}\n\n:\n",
        # Regression: `data:` lines without the blank line that ends an event grew the
        # parser's state without bound (the target's state bound fails on it before the fix).
        b"\x03\x00" + b"data: x\n" * 600,
    ],
    "playlist": [
        b"#EXTM3U x-tvg-url=\"http://epg.example/guide.xml\"\r\n"
        b"#EXTINF:-1, tvg-id=\"news.es\" group-title=\"News\",Noticias 24\r\nhttp://ok.example/news\r\n---- Sports ----\r\n"
        b"#EXTINF:-1 tvg-name=\"B\"tvg-id=\"b.it\" tvg-logo=\"http://logo.example/b.png\" group-title=\"Sports\",B Sport\r\n"
        b"http://ok.example/b.m3u8?token=SECRET1|User-Agent=Kodi%2F20.1&Referer=https%3A%2F%2Fref.example%2F\r\n"
        b"#EXTGRP:Sports\r\n#EXTVLCOPT:http-user-agent=VLC/3.0 SECRET-UA\r\n#EXTVLCOPT:http-origin=https://origin.example\r\n"
        b"#EXTINF:-1 tvg-id=music.se,T\xe9l\xe9 Matin\r\nhttp://ok.example/tele\r\n[OFFLINE]\r\n"
        b"#EXTINF:-1 group-title=\"Apps\",Piped\r\npipe:///usr/bin/ffmpeg -i x -f mpegts -\r\n",
        b"#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-STREAM-INF:BANDWIDTH=1280000,RESOLUTION=1280x720\nhttp://h/720.m3u8\n"
        b"#EXT-X-STREAM-INF:BANDWIDTH=640000\nlow.m3u8\n",
        b"#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n#EXTINF:2,\nseg1.ts\n",
        b"\xff\xfe" + "#EXTM3U\r\n#EXTINF:-1,A\r\nhttp://a\r\n".encode("utf-16-le"),
        b"#EXTM3U\n#KODIPROP:inputstream.adaptive.stream_headers=User-Agent=x&Referer=y\n"
        b"#EXTHTTP:{\"cookie\":\"a=b\"}\n#EXTINF:-1 tvg-id=\"x\",Title, with comma\nhttp://a|User-Agent=z\n",
    ],
    "accounts": [
        b'{"accounts": [\n  {"name": "prov", "url_prefix": "http://dead.primary/", "profiles": [\n'
        b'    {"name": "main", "max_streams": 2},\n'
        b'    {"name": "backup", "max_streams": 3, "replace_prefix": "http://ok.backup/"}]}\n]}',
        b'{"accounts":[{"name":"solo","url_prefix":"http://one.slot/","profiles":[{"name":"only","max_streams":1}]}]}',
        b'{"accounts":[{"name":"a","url_prefix":"http://a.example/","profiles":[{"name":"p"}]},'
        b'{"name":"b","url_prefix":"http://a.example/live/","profiles":[{"name":"q","replace_prefix":""}]}]}',
    ],
    "ffprobe": [
        b'{"streams":[{"index":0,"codec_type":"video","codec_name":"h264","width":320,"height":240,'
        b'"avg_frame_rate":"0/0","r_frame_rate":"30000/1001","bit_rate":"500000"},'
        b'{"index":1,"codec_type":"audio","codec_name":"aac"}],"format":{"format_name":"flv","bit_rate":"628000"}}',
        b'{"streams":[{"codec_type":"audio","codec_name":"mp3"}],"format":{}}',
        b'{"streams":[{"codec_type":"data"}]}',
    ],
    # The first byte picks the body: 0 create, 1 update, 2 session event, 3 keep-alive,
    # 4 placement claim, 5 the event stream's `streams` list.
    "registry_body": [
        b"\x00" + b'{"name":"agora","isActive":true,"priority":1,"config":{"appId":"x","secret":"s","probe":{"type":"tcp","address":"127.0.0.1:9"}},"maxStreams":5,"monthlyCost":10.5}',
        b"\x00" + b'{"name":"events"}',
        b"\x01" + b'{"isActive":false,"priority":3,"maxStreams":null,"monthlyCost":0,"config":{"probe":{"type":"http","url":"http://x/"}}}',
        b"\x01" + b'{"priority":-1}',
        b"\x02" + b'{"type":"failover","provider":"agora","toProvider":"zegocloud","streamId":"s1","reason":"timeout","clientId":"sg-1"}',
        b"\x02" + b'{"type":"start","provider":"agora","streamId":"s1"}',
        b"\x03" + b'{"clientId":"sg-1","sessions":[{"provider":"agora","streamId":"s1"},{"provider":"zego","streamId":"s2"}]}',
        b"\x04" + b'{"provider":"agora","epoch":1,"standby":["zego","webrtc"],"clientId":"sg-1"}',
        b"\x05" + b"s1,s2,s1",
    ],
}

for target, seeds in SEEDS.items():
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    for i, seed in enumerate(seeds):
        with open(os.path.join(d, f"seed-{i}"), "wb") as f:
            f.write(seed)
