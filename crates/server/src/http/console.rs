//! The web console: one page at `/` of the HTTP listener, for people who would rather look at
//! their warehouse in a browser than script it (like ClickHouse's Play or the DuckDB UI).
//!
//! The page and its script are compiled into the binary (`crates/server/console/`) and load
//! nothing from elsewhere, since the machine may have no network. The script signs in through
//! `POST /v1/login` and reads everything through `POST /v1/statements`: the same users,
//! permissions, slots and query log as every other client.

use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

const PAGE: &str = include_str!("../../console/index.html");
const SCRIPT: &str = include_str!("../../console/console.js");

/// What the page may load and run: its own script and the API, nothing else.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; \
                      connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'";

pub(super) async fn page() -> Response {
    asset(PAGE, "text/html; charset=utf-8")
}

pub(super) async fn script() -> Response {
    asset(SCRIPT, "text/javascript; charset=utf-8")
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// Leaves `WWW-Authenticate` off the 401s of the page's own requests (they say
/// `X-Requested-With: XMLHttpRequest`): a browser answers that header with its own password
/// dialog, over the page's sign-in form.
pub(super) async fn no_browser_dialog(request: Request, next: Next) -> Response {
    let from_page = request
        .headers()
        .get("x-requested-with")
        .is_some_and(|v| v == HeaderValue::from_static("XMLHttpRequest"));
    let mut response = next.run(request).await;
    if from_page {
        response.headers_mut().remove(header::WWW_AUTHENTICATE);
    }
    response
}
