//! The web chat page at `/`: one self-contained HTML file (its CSS and script inline, no
//! external resource), embedded in the binary. A browser, which asks for `text/html`, gets
//! the page; any other client keeps getting the plain "Hearth is running" that API
//! clients probe for.
//!
//! The page is only a client of the API: it lists models with `GET /v1/models` and
//! streams answers from `POST /v1/chat/completions`, sending the key it keeps in the
//! browser's storage (asked for when a call answers 401). It renders model output as text
//! nodes only, so nothing a model writes can become markup.
//!
//! Its `Content-Security-Policy` allows the inline script and style by their SHA-256
//! hashes (computed once from the embedded page, so an edit to the page cannot leave a
//! stale hash behind), and nothing else: no other script, no inline event handler or
//! style attribute, no connection to another origin, no frame, no form target.

use std::sync::OnceLock;

use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use sha2::{Digest, Sha256};

/// The page, as shipped.
const PAGE: &str = include_str!("ui/index.html");

/// What `/` answers a client that did not ask for HTML.
const PLAIN: &str = "Hearth is running";

/// `GET /` and `HEAD /`: the chat page for a browser, the plain text for anything else.
/// The answer depends on `Accept`, so both say so in `Vary`.
pub async fn root(headers: HeaderMap) -> Response {
    let vary = (header::VARY, HeaderValue::from_static("Accept"));
    if !wants_html(&headers) {
        return ([vary], PLAIN).into_response();
    }
    (
        [
            vary,
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CONTENT_SECURITY_POLICY, csp().clone()),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        PAGE,
    )
        .into_response()
}

/// Whether an `Accept` header lists `text/html` (and does not refuse it with `q=0`).
/// Browsers send it on navigation; API clients send `*/*`, `application/json` or nothing.
fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';').map(str::trim);
            let media = parts.next().unwrap_or("");
            let refused = parts.any(|p| {
                p.split_once('=').is_some_and(|(k, v)| {
                    k.trim().eq_ignore_ascii_case("q")
                        && v.trim().parse::<f32>().is_ok_and(|q| q <= 0.0)
                })
            });
            media.eq_ignore_ascii_case("text/html") && !refused
        })
}

/// The page's policy: itself and its API only, the inline blocks by hash.
fn csp() -> &'static HeaderValue {
    static CSP: OnceLock<HeaderValue> = OnceLock::new();
    CSP.get_or_init(|| {
        let hash = |tag: &str| {
            let body = inline_block(PAGE, tag)
                .unwrap_or_else(|| panic!("the embedded page has no <{tag}> block"));
            let digest = Sha256::digest(body.as_bytes());
            format!(
                "'sha256-{}'",
                base64::engine::general_purpose::STANDARD.encode(digest)
            )
        };
        let policy = format!(
            "default-src 'self'; script-src {}; style-src {}; connect-src 'self'; \
             img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'none'; \
             frame-ancestors 'none'",
            hash("script"),
            hash("style")
        );
        HeaderValue::from_str(&policy).expect("the policy is ASCII")
    })
}

/// The text between `<tag>` and `</tag>` (the first such block), which is what a browser
/// hashes for the policy.
fn inline_block<'a>(page: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = page.find(&open)? + open.len();
    let len = page[start..].find(&format!("</{tag}>"))?;
    Some(&page[start..start + len])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn browsers_get_the_page_api_clients_the_text() {
        let chrome = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8";
        assert!(wants_html(&accept(chrome)));
        assert!(wants_html(&accept("TEXT/HTML; charset=utf-8")));
        assert!(!wants_html(&HeaderMap::new()));
        assert!(!wants_html(&accept("*/*")));
        assert!(!wants_html(&accept("application/json")));
        assert!(!wants_html(&accept("text/html;q=0, */*")));
        assert!(!wants_html(&accept("text/htmlx")));
    }

    #[test]
    fn the_page_is_self_contained() {
        // One inline script and one inline style, which the policy's hashes cover.
        for tag in ["script", "style"] {
            assert_eq!(PAGE.matches(&format!("<{tag}")).count(), 1, "<{tag}>");
            assert!(inline_block(PAGE, tag).is_some_and(|b| !b.trim().is_empty()));
        }
        // Nothing the policy would block, and nothing fetched from elsewhere.
        let lower = PAGE.to_ascii_lowercase();
        assert!(!lower.contains(" style="), "a style attribute");
        assert!(!lower.contains("innerhtml"), "markup built from strings");
        assert!(!lower.contains(" src="), "an external resource");
        // No inline event handler (` onclick=` and the like) anywhere.
        for (at, _) in lower.match_indices(" on") {
            let name = lower[at + 3..].trim_start_matches(|c: char| c.is_ascii_lowercase());
            assert!(!name.starts_with('='), "an inline handler at byte {at}");
        }
        let policy = csp().to_str().unwrap();
        assert!(policy.contains("connect-src 'self'"), "{policy}");
        assert!(!policy.contains("unsafe"), "{policy}");
        assert_eq!(policy.matches("'sha256-").count(), 2, "{policy}");
    }

    #[tokio::test]
    async fn root_answers_by_accept() {
        use http_body_util::BodyExt;
        let r = root(accept("text/html")).await;
        assert!(r.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        assert!(r.headers().contains_key(header::CONTENT_SECURITY_POLICY));
        let body = r.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body.len(), PAGE.len());

        let r = root(accept("*/*")).await;
        assert!(!r.headers().contains_key(header::CONTENT_SECURITY_POLICY));
        let body = r.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], PLAIN.as_bytes());
    }
}
