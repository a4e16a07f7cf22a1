use super::*;
use proptest::prelude::*;

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn only_entry(text: &str) -> Entry {
    let p = parse(text).unwrap();
    assert_eq!(p.entries.len(), 1, "{text:?} -> {p:#?}");
    p.entries.into_iter().next().unwrap()
}

type Pairs = &'static [(&'static str, &'static str)];

/// (`#EXTINF` line, title, attributes) for every form seen in real playlists.
#[test]
fn extinf_forms_give_title_and_every_attribute() {
    let cases: &[(&str, &str, Pairs)] = &[
        ("#EXTINF:-1,Plain", "Plain", &[]),
        ("#EXTINF:0,  Spaced  ", "Spaced", &[]),
        ("#EXTINF:10.5,Decimal duration", "Decimal duration", &[]),
        (
            r#"#EXTINF:-1 tvg-id="a,b" group-title="News, World",BBC One, HD"#,
            "BBC One, HD",
            &[("tvg-id", "a,b"), ("group-title", "News, World")],
        ),
        (
            r#"#EXTINF:-1, tvg-id="news.es" group-title="News",Noticias 24"#,
            "Noticias 24",
            &[("tvg-id", "news.es"), ("group-title", "News")],
        ),
        (
            "#EXTINF:-1 tvg-id=music.se tvg-name=Music group-title=Radio,Music SE",
            "Music SE",
            &[
                ("tvg-id", "music.se"),
                ("tvg-name", "Music"),
                ("group-title", "Radio"),
            ],
        ),
        (
            r#"#EXTINF:-1 tvg-name="B"tvg-id="b.it"tvg-logo="http://l/b.png",B Italia"#,
            "B Italia",
            &[
                ("tvg-name", "B"),
                ("tvg-id", "b.it"),
                ("tvg-logo", "http://l/b.png"),
            ],
        ),
        (
            "#EXTINF:-1 tvg-id='single' radio=true,Quoted once",
            "Quoted once",
            &[("tvg-id", "single"), ("radio", "true")],
        ),
        (
            r#"#EXTINF:-1 tvg-id="x" tvg-name="",Empty value"#,
            "Empty value",
            &[("tvg-id", "x"), ("tvg-name", "")],
        ),
        (
            r#"#EXTINF:tvg-id="nodur" group-title="G",No duration"#,
            "No duration",
            &[("tvg-id", "nodur"), ("group-title", "G")],
        ),
        (
            r#"#EXTINF:-1 CUID="12" tvg-chno=5 catchup="default" catchup-days="7",Case kept"#,
            "Case kept",
            &[
                ("CUID", "12"),
                ("tvg-chno", "5"),
                ("catchup", "default"),
                ("catchup-days", "7"),
            ],
        ),
        // Not attributes after the comma: the whole rest is the title.
        ("#EXTINF:-1,Score=2,1", "Score=2,1", &[]),
        ("#EXTINF:-1,A = B, C", "A = B, C", &[]),
        (
            r#"#EXTINF:-1 tvg-id="x",Title "quoted""#,
            r#"Title "quoted""#,
            &[("tvg-id", "x")],
        ),
        // An unterminated quote: the title is after the first comma.
        (r#"#EXTINF:-1 tvg-name="Broken,Rescued"#, "Rescued", &[]),
        // Lower-case directive, title with `#` and unicode.
        ("#extinf:-1,Télé #1 📺", "Télé #1 📺", &[]),
    ];
    for (line, title, attrs) in cases {
        let e = only_entry(&format!("#EXTM3U\n{line}\nhttp://h/s\n"));
        assert_eq!(&e.name, title, "{line}");
        assert_eq!(e.attributes, pairs(attrs), "{line}");
        assert_eq!(e.line, 3, "{line}");
        assert_eq!(e.url, "http://h/s", "{line}");
    }
}

#[test]
fn names_fall_back_to_tvg_name_then_the_url() {
    let p = parse("#EXTINF:-1 tvg-name=\"Named\",\nhttp://a\n#EXTINF:-1,\nhttp://b\nhttp://c\n")
        .unwrap();
    let names: Vec<&str> = p.entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["Named", "http://b", "http://c"]);
    assert!(p.warnings.iter().all(|w| !w.message.contains("URL")));
}

#[test]
fn groups_come_from_group_title_else_extgrp_for_the_next_url_only() {
    let p = parse(
        "#EXTM3U\n#EXTGRP:Sports\n#EXTINF:-1,A\nhttp://a\n\
         #EXTGRP:Kids\n#EXTINF:-1 group-title=\"Movies\",B\nhttp://b\n\
         #EXTINF:-1,C\nhttp://c\n#EXTINF:-1 group-title=\"\",D\n#EXTGRP:Fallback\nhttp://d\n",
    )
    .unwrap();
    let groups: Vec<Option<&str>> = p.entries.iter().map(|e| e.group.as_deref()).collect();
    assert_eq!(
        groups,
        [Some("Sports"), Some("Movies"), None, Some("Fallback")]
    );
}

#[test]
fn the_header_keeps_its_attributes_and_a_missing_one_is_a_warning() {
    let p = parse(
        "#EXTM3U x-tvg-url=\"http://epg/a.xml,http://epg/b.xml\" url-tvg=http://epg/c.xml tvg-shift=0\n\
         #EXTINF:-1,A\nhttp://a\n",
    )
    .unwrap();
    assert_eq!(
        p.attribute("X-TVG-URL"),
        Some("http://epg/a.xml,http://epg/b.xml")
    );
    assert_eq!(p.attribute("url-tvg"), Some("http://epg/c.xml"));
    assert_eq!(p.attribute("tvg-shift"), Some("0"));
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);

    // Two playlists pasted together: the second header's attributes are kept too.
    let p = parse("#EXTM3U a=1\nhttp://a\n#EXTM3U b=\"2\"\nhttp://b\n").unwrap();
    assert_eq!((p.attribute("a"), p.attribute("b")), (Some("1"), Some("2")));
    assert_eq!(p.entries.len(), 2);

    let p = parse("\n\n#EXTINF:-1,A\nhttp://a").unwrap();
    assert_eq!(p.entries.len(), 1);
    assert_eq!(
        p.warnings,
        [Warning {
            line: 3,
            message: "no #EXTM3U header (read as M3U anyway)".into()
        }]
    );
}

#[test]
fn bom_crlf_lone_cr_and_a_missing_final_newline_are_all_read() {
    for text in [
        "\u{feff}#EXTM3U\r\n#EXTINF:-1,A\r\nhttp://a\r\n#EXTINF:-1,B\r\nhttp://b",
        "#EXTM3U\r#EXTINF:-1,A\rhttp://a\r#EXTINF:-1,B\rhttp://b\r",
        "#EXTM3U\n#EXTINF:-1,A\nhttp://a\n\n\n#EXTINF:-1,B\nhttp://b",
    ] {
        let p = parse(text).unwrap();
        let got: Vec<(&str, &str)> = p
            .entries
            .iter()
            .map(|e| (e.name.as_str(), e.url.as_str()))
            .collect();
        assert_eq!(got, [("A", "http://a"), ("B", "http://b")], "{text:?}");
        assert!(p.warnings.is_empty(), "{text:?}: {:?}", p.warnings);
        assert_eq!(p.entries[0].line, 3);
    }
}

#[test]
fn bytes_are_utf8_when_valid_else_windows_1252_and_boms_decide() {
    let latin1 = b"#EXTM3U\n#EXTINF:-1 group-title=\"S\xe9ries\",T\xe9l\xe9 Matin\nhttp://a\n";
    let p = read(latin1).unwrap();
    assert_eq!(p.encoding, "windows-1252");
    assert_eq!(p.entries[0].name, "Télé Matin");
    assert_eq!(p.entries[0].group.as_deref(), Some("Séries"));
    // 0x80 is the euro sign in Windows-1252 (not a C1 control as in ISO-8859-1).
    assert_eq!(
        read(b"#EXTINF:-1,\x80 TV\nhttp://a").unwrap().entries[0].name,
        "€ TV"
    );

    let utf8 = "#EXTM3U\n#EXTINF:-1,Télé Matin\nhttp://a\n";
    let p = read(utf8.as_bytes()).unwrap();
    assert_eq!(
        (p.encoding, p.entries[0].name.as_str()),
        ("UTF-8", "Télé Matin")
    );

    let mut bom8 = b"\xef\xbb\xbf".to_vec();
    bom8.extend_from_slice(utf8.as_bytes());
    let p = read(&bom8).unwrap();
    assert_eq!(p.entries[0].name, "Télé Matin");
    assert!(
        p.warnings.is_empty(),
        "the BOM is not text: {:?}",
        p.warnings
    );

    let mut utf16: Vec<u8> = vec![0xff, 0xfe];
    utf16.extend(utf8.encode_utf16().flat_map(u16::to_le_bytes));
    let p = read(&utf16).unwrap();
    assert_eq!(
        (p.encoding, p.entries[0].name.as_str()),
        ("UTF-16LE", "Télé Matin")
    );
}

#[test]
fn junk_lines_are_warnings_with_line_numbers_and_not_entries() {
    let p = parse(
        "#EXTM3U\n---- Sports ----\n[OFFLINE]\nsegment_001.ts\n#EXTINF:-1,Orphan\n\
         #EXTINF:-1,Real\nhttp://ok/1\nhttp//typo.example/x?token=SECRET\n#EXTINF:-1,Last\n",
    )
    .unwrap();
    assert_eq!(p.entries.len(), 1);
    assert_eq!(p.entries[0].name, "Real");
    assert_eq!(p.entries[0].line, 7);
    let lines: Vec<usize> = p.warnings.iter().map(|w| w.line).collect();
    assert_eq!(lines, [2, 3, 4, 5, 8, 9], "{:#?}", p.warnings);
    assert!(p.warnings[0].message.contains("---- Sports ----"));
    assert!(p.warnings[3].message.contains("no URL"));
    assert!(
        !p.warnings[4].message.contains("SECRET"),
        "{}",
        p.warnings[4].message
    );
}

#[test]
fn over_long_lines_are_skipped_with_a_warning() {
    let long_title = "x".repeat(MAX_LINE + 1);
    let text = format!(
        "#EXTM3U\n#EXTINF:-1,{long_title}\nhttp://a\nhttp://{long_title}\n#EXTINF:-1,B\nhttp://b\n"
    );
    let p = parse(&text).unwrap();
    let got: Vec<(&str, usize)> = p
        .entries
        .iter()
        .map(|e| (e.name.as_str(), e.line))
        .collect();
    assert_eq!(got, [("http://a", 3), ("B", 6)]);
    let lines: Vec<usize> = p.warnings.iter().map(|w| w.line).collect();
    assert_eq!(lines, [2, 4]);
    assert!(p.warnings.iter().all(|w| w.message.len() < 100));
}

#[test]
fn schemes_outside_the_supported_list_are_unsupported_entries() {
    let p = parse(
        "#EXTM3U\nhttp://a\nHTTPS://b\nrtmp://c/live/x\nrtsp://d\nudp://@239.0.0.1:1234\nsrt://e:9000\n\
         pipe:///usr/bin/ffmpeg -i x\nplugin://plugin.video.youtube/play/?id=1\nacestream://0123abcd\nfile:///tmp/a.ts\n",
    )
    .unwrap();
    let got: Vec<(&str, bool)> = p
        .entries
        .iter()
        .map(|e| (e.url.as_str(), e.unsupported.is_some()))
        .collect();
    assert_eq!(
        got,
        [
            ("http://a", false),
            ("HTTPS://b", false),
            ("rtmp://c/live/x", false),
            ("rtsp://d", false),
            ("udp://@239.0.0.1:1234", false),
            ("srt://e:9000", false),
            ("pipe:///usr/bin/ffmpeg -i x", true),
            ("plugin://plugin.video.youtube/play/?id=1", true),
            ("acestream://0123abcd", true),
            ("file:///tmp/a.ts", true),
        ]
    );
    assert_eq!(
        p.entries[6].unsupported.as_deref(),
        Some("scheme pipe:// is not checked")
    );
}

#[test]
fn per_stream_options_come_from_vlcopt_kodiprop_exthttp_and_the_pipe_suffix() {
    // (playlist, user agent, other headers, URL)
    let cases: &[(&str, Option<&str>, Pairs, &str)] = &[
        (
            "#EXTVLCOPT:http-user-agent=Mozilla/5.0 (X11; Linux)\n#EXTVLCOPT:http-referrer=https://site.example/\n\
             #EXTVLCOPT:http-origin=https://site.example\nhttp://h/a.m3u8",
            Some("Mozilla/5.0 (X11; Linux)"),
            &[("Referer", "https://site.example/"), ("Origin", "https://site.example")],
            "http://h/a.m3u8",
        ),
        (
            "#EXTVLCOPT:http-referer=https://typo.example/\nhttp://h/b",
            None,
            &[("Referer", "https://typo.example/")],
            "http://h/b",
        ),
        (
            "http://h/c.m3u8?token=abc|User-Agent=My%20Player%2F1.0&Referer=https%3A%2F%2Fr.example%2Fp%3Fq%3D1",
            Some("My Player/1.0"),
            &[("Referer", "https://r.example/p?q=1")],
            "http://h/c.m3u8?token=abc",
        ),
        (
            "#KODIPROP:inputstream.adaptive.stream_headers=user-agent=Kodi%2F20&Cookie=a%3Db\n\
             #KODIPROP:inputstream.adaptive.manifest_type=hls\nhttp://h/d",
            Some("Kodi/20"),
            &[("Cookie", "a=b")],
            "http://h/d",
        ),
        (
            "#EXTHTTP:{\"cookie\":\"sid=1\",\"User-Agent\":\"J\"}\nhttp://h/e",
            Some("J"),
            &[("cookie", "sid=1")],
            "http://h/e",
        ),
        (
            // A percent-encoded line break cannot smuggle in a header; an empty value is none.
            "http://h/i|Referer=a%0D%0AX-Evil:%201&Origin=&Cookie=ok",
            None,
            &[("Cookie", "ok")],
            "http://h/i",
        ),
        (
            // The pipe suffix wins over an earlier option for the same header.
            "#EXTVLCOPT:http-user-agent=Old\nhttp://h/f|user-agent=New",
            Some("New"),
            &[],
            "http://h/f",
        ),
    ];
    for (text, ua, headers, url) in cases {
        let e = only_entry(text);
        assert_eq!(e.url, *url, "{text}");
        assert_eq!(e.options.user_agent.as_deref(), *ua, "{text}");
        assert_eq!(e.options.headers, pairs(headers), "{text}");
    }
    assert_eq!(only_entry("http://h/a|b.ts").url, "http://h/a|b.ts");
    let e = only_entry("#EXTVLCOPT:network-caching=1000\n#KODIPROP:inputstream=x\nhttp://h/g");
    assert_eq!(e.vlc_options, pairs(&[("network-caching", "1000")]));
    assert_eq!(e.kodi_props, pairs(&[("inputstream", "x")]));
    assert!(e.options.is_empty());
    // Options belong to one entry: the next one starts clean.
    let p = parse("#EXTVLCOPT:http-user-agent=UA\nhttp://a\nhttp://b\n").unwrap();
    assert!(p.entries[1].options.is_empty());
    let p = parse("#EXTHTTP:not json\nhttp://a\n").unwrap();
    assert_eq!(p.warnings[1].line, 1);
}

#[test]
fn an_hls_media_playlist_is_refused_with_its_tag_and_line() {
    let media = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:7\n\
                 #EXTINF:2.000,\nhttp://h/seg7.ts\n#EXTINF:2.000,\nhttp://h/seg8.ts\n";
    let err = parse(media).unwrap_err();
    assert_eq!(
        err,
        PlaylistError::HlsMediaPlaylist {
            line: 3,
            tag: "#EXT-X-TARGETDURATION".into()
        }
    );
    assert!(err.to_string().contains("HLS media playlist"));
    let seq_first = "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:1\n#EXTINF:4,\nseg1.ts\n";
    assert!(matches!(
        parse(seq_first),
        Err(PlaylistError::HlsMediaPlaylist { line: 2, .. })
    ));
    assert!(parse("#EXTM3U\n#EXTINF:-1,A\nhttp://a\n#EXT-X-ENDLIST\n").is_err());
}

#[test]
fn an_hls_master_playlist_lists_its_absolute_variants() {
    let master = "#EXTM3U\n#EXT-X-VERSION:3\n\
                  #EXT-X-STREAM-INF:BANDWIDTH=2500000,RESOLUTION=1280x720,CODECS=\"avc1.4d401f,mp4a.40.2\"\n\
                  http://h/720.m3u8\n#EXT-X-STREAM-INF:BANDWIDTH=800000\nlow/index.m3u8\n";
    let p = parse(master).unwrap();
    assert_eq!(p.entries.len(), 1);
    let e = &p.entries[0];
    assert_eq!(e.name, "variant 1280x720 2500 kb/s");
    assert_eq!(e.attribute("codecs"), Some("avc1.4d401f,mp4a.40.2"));
    assert_eq!(e.attribute("BANDWIDTH"), Some("2500000"));
    assert_eq!(p.warnings.len(), 1);
    assert_eq!(p.warnings[0].line, 6);
}

#[test]
fn redaction_hides_credentials_queries_and_options() {
    assert_eq!(
        redact("http://u:p@h:80/live/1.ts?token=abc"),
        "http://h:80/live/1.ts?..."
    );
    assert_eq!(redact("http://h/a|User-Agent=x"), "http://h/a?...");
    assert_eq!(redact("rtmp://h/live/key"), "rtmp://h/live/key");
    assert_eq!(redact("http://h/p@th"), "http://h/p@th");
}

/// A well-formed entry to hide among junk, and what the reader must find in it.
#[derive(Debug, Clone)]
struct WellFormed {
    lines: Vec<String>,
    name: String,
    url: String,
    user_agent: Option<String>,
    group: Option<String>,
}

fn entry_strategy() -> impl Strategy<Value = WellFormed> {
    (
        "[A-Za-z][A-Za-z0-9 ]{0,20}",
        "[a-z0-9]{1,12}",
        proptest::option::of("[a-z.]{1,10}"),
        proptest::option::of("[A-Za-z0-9/;() ]{0,20}"),
        proptest::option::of("[A-Za-z][A-Za-z ,]{0,10}"),
        any::<(bool, bool, bool)>(),
    )
        .prop_map(|(name, path, id, ua, group, (comma_first, pipe, extgrp))| {
            let name = name.trim().to_string();
            let name = if name.is_empty() { "N".into() } else { name };
            let url = format!("http://stream.example/{path}");
            let mut attrs = id.map(|id| format!(" tvg-id=\"{id}\"")).unwrap_or_default();
            let mut lines = Vec::new();
            match &group {
                Some(g) if extgrp => lines.push(format!("#EXTGRP:{g}")),
                Some(g) => attrs.push_str(&format!(" group-title=\"{g}\"")),
                None => {}
            }
            lines.push(if comma_first && !attrs.is_empty() {
                format!("#EXTINF:-1,{attrs},{name}")
            } else {
                format!("#EXTINF:-1{attrs},{name}")
            });
            let mut url_line = url.clone();
            match &ua {
                Some(ua) if pipe => {
                    let encoded = percent_encoding::utf8_percent_encode(
                        ua,
                        percent_encoding::NON_ALPHANUMERIC,
                    );
                    url_line.push_str(&format!("|User-Agent={encoded}"));
                }
                Some(ua) => lines.push(format!("#EXTVLCOPT:http-user-agent={ua}")),
                None => {}
            }
            lines.push(url_line);
            WellFormed {
                lines,
                name,
                url,
                user_agent: ua.map(|u| u.trim().to_string()).filter(|u| !u.is_empty()),
                group: group
                    .map(|g| g.trim().to_string())
                    .filter(|g| !g.is_empty()),
            }
        })
}

/// Lines that are never URLs nor directives that would change the next entry.
fn junk_line() -> impl Strategy<Value = String> {
    prop_oneof![
        "[^#\n\r]{0,30}".prop_filter("not a URL", |s| scheme(s.trim()).is_none()),
        Just("---- Sports ----".to_string()),
        Just("[OFFLINE]".to_string()),
        Just("# a comment".to_string()),
        Just(String::new()),
        "#[A-Z]{1,8}:[ -~]{0,20}".prop_filter("not a directive we read", |s| {
            ![
                "#EXTINF",
                "#EXTGRP",
                "#EXTVLCOPT",
                "#KODIPROP",
                "#EXTHTTP",
                "#EXTM3U",
                "#EXT-X",
            ]
            .iter()
            .any(|t| s.to_ascii_uppercase().starts_with(t))
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Any bytes at all: the reader returns, it does not panic.
    #[test]
    fn the_reader_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        let _ = read(&bytes);
    }

    /// Any text made of directive-like pieces: no panic, and every entry is a URL line.
    #[test]
    fn the_reader_never_panics_on_directive_soup(
        parts in proptest::collection::vec(prop_oneof![
            Just("#EXTINF:".to_string()), Just("#EXTM3U ".to_string()), Just(",".to_string()),
            Just("\"".to_string()), Just("'".to_string()), Just("=".to_string()),
            Just("tvg-id".to_string()), Just("|".to_string()), Just("%".to_string()),
            Just("\r".to_string()), Just("\n".to_string()), Just("http://".to_string()),
            Just("#EXTVLCOPT:".to_string()), Just("#KODIPROP:".to_string()),
            Just("#EXT-X-STREAM-INF:".to_string()), Just("é".to_string()), Just(" ".to_string()),
        ], 0..60)
    ) {
        let text = parts.concat();
        if let Ok(p) = parse(&text) {
            for e in &p.entries {
                prop_assert!(scheme(&e.url).is_some(), "{:?}", e);
                // Options were split off: what is left after a `|` is no `Name=value`.
                prop_assert!(e.url.split_once('|').is_none_or(|(_, rest)| !rest.contains('=')), "{:?}", e);
            }
        }
    }

    /// Well-formed entries among random junk lines are all found, in order, with their names,
    /// URLs, lines, groups and user agents; junk never becomes an entry.
    #[test]
    fn no_well_formed_entry_is_lost_among_junk(
        items in proptest::collection::vec(
            prop_oneof![
                3 => entry_strategy().prop_map(Ok),
                2 => junk_line().prop_map(Err),
            ],
            0..40,
        ),
        crlf in any::<bool>(),
    ) {
        let mut lines = vec!["#EXTM3U".to_string()];
        let mut want = Vec::new();
        for item in &items {
            match item {
                Ok(e) => {
                    lines.extend(e.lines.iter().cloned());
                    want.push((e.name.clone(), e.url.clone(), lines.len(), e.group.clone(), e.user_agent.clone()));
                }
                Err(junk) => lines.push(junk.clone()),
            }
        }
        let text = lines.join(if crlf { "\r\n" } else { "\n" });
        let p = parse(&text).unwrap();
        let got: Vec<_> = p
            .entries
            .iter()
            .map(|e| (e.name.clone(), e.url.clone(), e.line, e.group.clone(), e.options.user_agent.clone()))
            .collect();
        prop_assert_eq!(got, want);
    }
}
