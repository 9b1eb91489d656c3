//! One request to the API and what can come of it: an answer, a refusal, or a failure to get either.

use std::time::Duration;

use reqwest::{Method, Url};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::args::{ApiArgs, Secret};
use super::model::ErrorBody;
use super::{API_ENV, DEFAULT_API, TOKEN_ENV};

/// The largest answer the client reads (a listing of 100000 payments fits); a longer one is refused.
const MAX_BODY_BYTES: usize = 256 * 1024 * 1024;
/// At most this many characters of an undocumented body are quoted in an error.
const BODY_EXCERPT_CHARS: usize = 200;

/// Where the API is and who is asking.
pub(crate) struct Target {
    base: Url,
    token: Secret,
}

impl Target {
    /// From `--api`/`--token`, else `ZHENGJIAO_API`/`ZHENGJIAO_TOKEN`, else the default address; a
    /// token is required. The error is a usage message.
    pub(crate) fn resolve(args: &ApiArgs) -> Result<Target, String> {
        let address = match &args.api {
            Some(api) => api.clone(),
            None => env(API_ENV)?.unwrap_or_else(|| DEFAULT_API.to_owned()),
        };
        let base =
            Url::parse(address.trim()).map_err(|e| format!("--api / {API_ENV}: not a URL ({e}): {address:?}"))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() || base.host().is_none() {
            return Err(format!("--api / {API_ENV}: expected an http:// or https:// address, got {address:?}"));
        }
        let token = match &args.token {
            Some(token) => token.clone(),
            None => match env(TOKEN_ENV)? {
                Some(token) => Secret::new(token),
                None => return Err(format!("no token: give --token TOKEN or set {TOKEN_ENV}")),
            },
        };
        if token.expose().trim().is_empty() {
            return Err(format!("the token is empty: give --token TOKEN or set {TOKEN_ENV}"));
        }
        Ok(Target { base, token })
    }
}

/// An environment variable; unset and empty are the same.
fn env(name: &str) -> Result<Option<String>, String> {
    match std::env::var(name) {
        Ok(v) if v.is_empty() => Ok(None),
        Ok(v) => Ok(Some(v)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(format!("{name} is not valid UTF-8")),
    }
}

/// The API client of one verb.
pub(crate) struct Api {
    http: reqwest::Client,
    base: Url,
    token: Secret,
}

/// A 2xx answer whose body is JSON.
pub(crate) struct Answer {
    /// The HTTP status (200 or 202 matter).
    pub(crate) status: u16,
    /// The body as the API sent it.
    pub(crate) text: String,
}

/// Why a request gave no usable answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Failure {
    /// No connection could be made: nothing was sent.
    #[error("cannot reach the API at {address}: {detail}")]
    Unreachable { address: String, detail: String },
    /// The request may have been sent, but no complete answer came.
    #[error("no answer from the API at {address}: {detail}")]
    NoAnswer { address: String, detail: String },
    /// The API answered with its JSON error.
    #[error("the API refused (HTTP {status}): {}: {}", .error.code, .error.message)]
    Refused { status: u16, error: ErrorBody },
    /// The API answered with something that is not its documented JSON.
    #[error("the API answered HTTP {status} with a body that is not the documented JSON: {detail}")]
    BadBody { status: u16, detail: String },
    /// The request could not be built (e.g. a token that cannot go into a header).
    #[error("{0}")]
    Request(String),
}

impl Api {
    /// A client with the given connect timeout and whole-request timeout; it follows no redirects.
    pub(crate) fn new(target: Target, connect: Duration, request: Duration) -> Result<Api, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(connect)
            .timeout(request)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("zhengjiao/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Api { http, base: target.base, token: target.token })
    }

    /// The API's address, as said in messages.
    pub(crate) fn address(&self) -> String {
        self.base.origin().ascii_serialization()
    }

    /// The URL of a route: path segments (each percent-encoded) below the base, and query pairs.
    pub(crate) fn url(&self, segments: &[&str], query: &[(&str, String)]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    /// `GET url`.
    pub(crate) async fn get(&self, url: Url) -> Result<Answer, Failure> {
        self.send(Method::GET, url, None).await
    }

    /// `POST url` with a JSON body, or none.
    pub(crate) async fn post(&self, url: Url, body: Option<&Value>) -> Result<Answer, Failure> {
        self.send(Method::POST, url, body).await
    }

    async fn send(&self, method: Method, url: Url, body: Option<&Value>) -> Result<Answer, Failure> {
        let mut request = self.http.request(method, url).bearer_auth(self.token.expose());
        if let Some(body) = body {
            request = request.json(body);
        }
        let mut response = request.send().await.map_err(|e| self.transport(&e))?;
        let status = response.status().as_u16();
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.transport(&e))? {
            if bytes.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(Failure::BadBody {
                    status,
                    detail: format!("the body is longer than the limit of {MAX_BODY_BYTES} bytes"),
                });
            }
            bytes.extend_from_slice(&chunk);
        }
        let text = String::from_utf8(bytes)
            .map_err(|_| Failure::BadBody { status, detail: "the body is not UTF-8".to_owned() })?;
        if (200..300).contains(&status) {
            if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&text) {
                return Err(Failure::BadBody { status, detail: format!("not JSON ({e}): {}", excerpt(&text)) });
            }
            Ok(Answer { status, text })
        } else {
            match serde_json::from_str::<ErrorBody>(&text) {
                Ok(error) => Err(Failure::Refused { status, error }),
                Err(e) => Err(Failure::BadBody {
                    status,
                    detail: format!("not the API's error JSON ({e}): {}", excerpt(&text)),
                }),
            }
        }
    }

    /// Sorts a transport error: no connection (nothing sent), or no complete answer.
    fn transport(&self, e: &reqwest::Error) -> Failure {
        let address = self.address();
        let detail = innermost(e);
        if e.is_builder() {
            Failure::Request(format!("cannot build the request: {detail}"))
        } else if e.is_connect() {
            Failure::Unreachable { address, detail }
        } else if e.is_timeout() {
            Failure::NoAnswer { address, detail: format!("timed out ({detail})") }
        } else {
            Failure::NoAnswer { address, detail }
        }
    }
}

/// Reads a 2xx answer as one of the documented objects.
pub(crate) fn parse<T: DeserializeOwned>(answer: &Answer) -> Result<T, Failure> {
    serde_json::from_str(&answer.text).map_err(|e| Failure::BadBody { status: answer.status, detail: e.to_string() })
}

/// The deepest cause of an error: for a refused connection, "Connection refused (os error 111)" rather
/// than "error sending request".
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// The start of a body, control characters blanked, for an error message.
fn excerpt(text: &str) -> String {
    let mut out: String = text.chars().take(BODY_EXCERPT_CHARS).map(|c| if c.is_control() { ' ' } else { c }).collect();
    if text.chars().nth(BODY_EXCERPT_CHARS).is_some() {
        out.push_str("...");
    }
    format!("{out:?}")
}
