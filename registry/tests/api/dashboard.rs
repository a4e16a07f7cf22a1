//! The admin dashboard's static files: public, data-free, self-contained (no
//! inline code, nothing from other origins) and served with strict headers.

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};

use crate::common::{expect_error, Harness, ADMIN, SUPER};

const FILES: [(&str, &str); 4] = [
    ("/admin", "text/html"),
    ("/admin/", "text/html"),
    ("/admin/app.js", "text/javascript"),
    ("/admin/app.css", "text/css"),
];

fn assert_security_headers(path: &str, headers: &HeaderMap) {
    let get = |name: &str| {
        headers
            .get(name)
            .unwrap_or_else(|| panic!("{path}: no {name} header"))
            .to_str()
            .unwrap()
            .to_owned()
    };
    let csp = get("content-security-policy");
    let directives: Vec<&str> = csp.split(';').map(str::trim).collect();
    assert!(directives.contains(&"default-src 'self'"), "{path}: {csp}");
    assert!(
        directives.contains(&"frame-ancestors 'none'"),
        "{path}: {csp}"
    );
    assert!(!csp.contains("unsafe"), "{path}: {csp}");
    assert_eq!(get("x-frame-options"), "DENY", "{path}");
    assert_eq!(get("referrer-policy"), "no-referrer", "{path}");
    assert_eq!(get("x-content-type-options"), "nosniff", "{path}");
}

async fn fetch(h: &Harness, path: &str) -> (HeaderMap, String) {
    let response = h.get(path).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{path}");
    let headers = response.headers().clone();
    (headers, response.text().await.unwrap())
}

#[tokio::test]
async fn dashboard_files_are_public_with_strict_headers() {
    let mut h = Harness::start().await;
    for (path, content_type) in FILES {
        let (headers, body) = fetch(&h, path).await;
        let actual = headers["content-type"].to_str().unwrap();
        assert!(actual.starts_with(content_type), "{path}: {actual}");
        assert_security_headers(path, &headers);
        assert!(!body.is_empty(), "{path}");
        // Static content only: nothing about the providers, and no way to find a token in it.
        for secret in ["agora", "zegocloud", ADMIN, SUPER] {
            assert!(!body.contains(secret), "{path} contains {secret}");
        }
    }
    // The data itself still needs the token.
    let list = h
        .get("/api/streaming/providers/admin")
        .send()
        .await
        .unwrap();
    expect_error(list, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let head = h.request(Method::HEAD, "/admin").send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    let post = h.request(Method::POST, "/admin").send().await.unwrap();
    expect_error(post, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
    h.shutdown().await;
}

/// Every `<tag ...>` opening tag of an HTML document, lower-cased.
fn tags(html: &str) -> Vec<String> {
    html.split('<')
        .skip(1)
        .filter_map(|rest| {
            rest.split_once('>')
                .map(|(tag, _)| tag.to_ascii_lowercase())
        })
        .filter(|tag| !tag.starts_with('/') && !tag.starts_with('!'))
        .collect()
}

#[tokio::test]
async fn dashboard_has_no_inline_code_and_no_external_resources() {
    let mut h = Harness::start().await;
    let (_, html) = fetch(&h, "/admin").await;
    let tags = tags(&html);
    let scripts: Vec<&String> = tags.iter().filter(|t| t.starts_with("script")).collect();
    assert_eq!(scripts.len(), 1, "{scripts:?}");
    assert!(scripts[0].contains("src=\"/admin/app.js\""), "{scripts:?}");
    assert!(html.contains("<script src=\"/admin/app.js\" defer></script>"));
    let styles: Vec<&String> = tags.iter().filter(|t| t.starts_with("link")).collect();
    assert_eq!(styles.len(), 1, "{styles:?}");
    assert!(styles[0].contains("href=\"/admin/app.css\""), "{styles:?}");
    for tag in &tags {
        assert!(!tag.starts_with("style"), "inline <style>: {tag}");
        assert!(!tag.contains(" style="), "inline style attribute: {tag}");
        let handler = tag
            .split_whitespace()
            .any(|attr| attr.starts_with("on") && attr.contains('='));
        assert!(!handler, "inline event handler: {tag}");
        assert!(!tag.contains("javascript:"), "{tag}");
    }
    // The login form must never submit the token anywhere by itself (CSP form-action
    // 'none' also blocks it): it has no action and the password field no value.
    let form = tags.iter().find(|t| t.starts_with("form")).unwrap();
    assert!(!form.contains("action="), "{form}");

    let (_, script) = fetch(&h, "/admin/app.js").await;
    let (_, css) = fetch(&h, "/admin/app.css").await;
    for (name, text) in [
        ("index.html", &html),
        ("app.js", &script),
        ("app.css", &css),
    ] {
        let external = text
            .match_indices("http")
            .map(|(i, _)| &text[i..text.len().min(i + 40)])
            .filter(|s| s.starts_with("http://") || s.starts_with("https://"))
            .filter(|s| !s.starts_with("http://www.w3.org/2000/svg"))
            .collect::<Vec<_>>();
        assert!(external.is_empty(), "{name} refers to {external:?}");
        assert!(!text.contains("@import"), "{name}");
        assert!(!text.contains("url("), "{name}");
    }
    // The token is stored per tab and sent as a header, never in a URL or in localStorage.
    assert!(script.contains("sessionStorage"));
    assert!(!script.contains("localStorage"));
    assert!(script.contains("\"Bearer \""));
    assert!(!script.contains("innerHTML"));
    assert!(!script.contains("eval("));
    h.shutdown().await;
}

#[tokio::test]
async fn dashboard_files_spend_the_rate_limit_budget() {
    let mut h = Harness::start_with(|c| {
        c.rate_limit.per_second = 0.05;
        c.rate_limit.burst = 2;
    })
    .await;
    for _ in 0..2 {
        fetch(&h, "/admin").await;
    }
    let limited = h.get("/admin/app.js").send().await.unwrap();
    expect_error(limited, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    h.shutdown().await;
}
