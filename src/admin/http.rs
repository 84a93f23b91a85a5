//! The two HTTP endpoints: ZooKeeper's AdminServer (`admin.serverAddress:admin.serverPort`, commands
//! under `admin.commandURL`) and the Prometheus provider's `/metrics`
//! (`metricsProvider.httpHost:httpPort`).
//!
//! A deliberately small HTTP/1.1 server: one GET (or HEAD) per connection, answered with
//! `Connection: close`. Both endpoints are read-only, tiny, and scraped at most every few seconds,
//! so keep-alive, chunking and pipelining buy nothing, while a full HTTP stack would add several
//! crates. Bounds: request heads up to `REQUEST_HEAD_BYTES_MAX`, at most `CONNECTIONS_MAX`
//! connections at once (more are refused with 503), and `admin.idleTimeout` to send the request.
//!
//! Handlers never touch server state: they send a `CoreEvent::Admin` to the core task and wait for
//! the answer on a oneshot, then render JSON or Prometheus text here, off the core task.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::admin::commands::{self, AdminAnswer, AdminQuery};
use crate::admin::json::to_jackson_pretty;
use crate::admin::prometheus;
use crate::config::{Config, PROMETHEUS_METRICS_PROVIDER_CLASS_NAME};
use crate::server::net::CoreEvent;

/// Largest request head (request line plus headers) read.
const REQUEST_HEAD_BYTES_MAX: usize = 8 * 1024;
/// Connections served at once per endpoint.
const CONNECTIONS_MAX: usize = 32;
/// Query arguments kept per request.
const QUERY_ARGS_MAX: usize = 16;

/// What an HTTP listener serves.
#[derive(Debug, Clone)]
pub enum Endpoint {
    /// AdminServer commands under `command_url` (e.g. `/commands`).
    Admin {
        /// `admin.commandURL`.
        command_url: String,
    },
    /// Prometheus `/metrics`.
    Metrics {
        /// `metricsProvider.exportJvmInfo`: add the `process_*` families.
        export_process: bool,
    },
}

struct Response {
    status: &'static str,
    content_type: &'static str,
    body: String,
}

impl Response {
    fn text(status: &'static str, body: &str) -> Response {
        Response {
            status,
            content_type: "text/plain;charset=utf-8",
            body: body.to_string(),
        }
    }
}

fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Binds and spawns the endpoints the configuration enables. As in ZooKeeper, an AdminServer that
/// cannot bind is logged and skipped (`ZooKeeperServerMain` carries on), while a Prometheus
/// provider that cannot bind stops the start (`MetricsProviderLifeCycleException`); that error is
/// returned with the address.
pub async fn spawn_endpoints(
    config: &Config,
    events: &mpsc::Sender<CoreEvent>,
    shutdown: &watch::Receiver<bool>,
) -> Result<Vec<JoinHandle<()>>, (String, std::io::Error)> {
    let idle_timeout = Duration::from_millis(u64::from(config.admin_idle_timeout_ms.max(1)));
    let mut tasks = Vec::new();
    let mut spawn = |listener, endpoint| {
        tasks.push(tokio::spawn(serve(
            listener,
            endpoint,
            events.clone(),
            idle_timeout,
            shutdown.clone(),
        )));
    };
    if config.metrics_provider_class_name == PROMETHEUS_METRICS_PROVIDER_CLASS_NAME {
        let address = join_host_port(&config.metrics_provider_http_host, config.metrics_provider_http_port);
        let listener = TcpListener::bind(&address).await.map_err(|e| (address.clone(), e))?;
        info!(%address, "Prometheus metrics at http://{address}/metrics");
        let endpoint = Endpoint::Metrics {
            export_process: config.metrics_provider_export_jvm_info,
        };
        spawn(listener, endpoint);
    }
    if config.admin_enable_server {
        let address = join_host_port(&config.admin_server_address, config.admin_server_port);
        match TcpListener::bind(&address).await {
            Ok(listener) => {
                info!(%address, "AdminServer at http://{address}{}", config.admin_command_url);
                let endpoint = Endpoint::Admin {
                    command_url: config.admin_command_url.clone(),
                };
                spawn(listener, endpoint);
            }
            Err(e) => warn!(%address, "unable to start AdminServer: {e}"),
        }
    }
    Ok(tasks)
}

/// Serves `endpoint` on `listener` until `shutdown` fires.
pub async fn serve(
    listener: TcpListener,
    endpoint: Endpoint,
    events: mpsc::Sender<CoreEvent>,
    idle_timeout: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(CONNECTIONS_MAX));
    let endpoint = Arc::new(endpoint);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => break,
        };
        let (mut stream, remote) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                warn!("admin/metrics accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            debug!(%remote, "too many HTTP connections; refusing");
            let busy = Response::text("503 Service Unavailable", "busy\n");
            tokio::spawn(async move {
                let _ = write_response(&mut stream, &busy, false).await;
            });
            continue;
        };
        let endpoint = endpoint.clone();
        let events = events.clone();
        tokio::spawn(async move {
            if let Err(e) = handle(&mut stream, &endpoint, &events, idle_timeout).await {
                debug!(%remote, "HTTP request ended: {e}");
            }
            drop(permit);
        });
    }
}

async fn handle(
    stream: &mut TcpStream,
    endpoint: &Endpoint,
    events: &mpsc::Sender<CoreEvent>,
    idle_timeout: Duration,
) -> std::io::Result<()> {
    let head = match tokio::time::timeout(idle_timeout, read_head(stream)).await {
        Ok(Ok(Some(head))) => head,
        Ok(Ok(None)) => {
            let r = Response::text("431 Request Header Fields Too Large", "request head too large\n");
            return write_response(stream, &r, false).await;
        }
        Ok(Err(e)) => return Err(e),
        Err(_) => return Ok(()),
    };
    let Some((method, target)) = parse_request_line(&head) else {
        return write_response(stream, &Response::text("400 Bad Request", "bad request\n"), false).await;
    };
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        return write_response(stream, &Response::text("405 Method Not Allowed", "only GET\n"), false).await;
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let path = percent_decode(path);
    let response = route(endpoint, &path, query, events).await;
    write_response(stream, &response, head_only).await
}

async fn route(endpoint: &Endpoint, path: &str, query: &str, events: &mpsc::Sender<CoreEvent>) -> Response {
    match endpoint {
        Endpoint::Metrics { export_process } => {
            if path != "/metrics" {
                return Response::text("404 Not Found", "not found\n");
            }
            match ask(events, AdminQuery::Metrics).await {
                Some(AdminAnswer::Metrics(snapshot)) => Response {
                    status: "200 OK",
                    content_type: prometheus::CONTENT_TYPE,
                    body: prometheus::exposition(&snapshot, *export_process),
                },
                _ => Response::text("503 Service Unavailable", "server stopping\n"),
            }
        }
        Endpoint::Admin { command_url } => {
            let base = command_url.trim_end_matches('/');
            let Some(rest) = path.strip_prefix(base) else {
                return Response::text("404 Not Found", "not found\n");
            };
            if rest.is_empty() || rest == "/" {
                return Response {
                    status: "200 OK",
                    content_type: "text/html",
                    body: commands::index_html(base),
                };
            }
            let Some(name) = rest.strip_prefix('/') else {
                return Response::text("404 Not Found", "not found\n");
            };
            let args = parse_query(query);
            match ask(
                events,
                AdminQuery::Command {
                    name: name.to_string(),
                    args,
                },
            )
            .await
            {
                Some(AdminAnswer::Command(map)) => Response {
                    status: "200 OK",
                    content_type: "application/json",
                    body: to_jackson_pretty(&serde_json::Value::Object(map)),
                },
                _ => Response::text("503 Service Unavailable", "server stopping\n"),
            }
        }
    }
}

async fn ask(events: &mpsc::Sender<CoreEvent>, query: AdminQuery) -> Option<AdminAnswer> {
    let (reply, answer) = oneshot::channel();
    events.send(CoreEvent::Admin { query, reply }).await.ok()?;
    answer.await.ok()
}

/// Reads up to the blank line ending the head; `None` when it exceeds the bound.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<String>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = find_head_end(&buf) {
            buf.truncate(end);
            return Ok(Some(String::from_utf8_lossy(&buf).into_owned()));
        }
        if buf.len() >= REQUEST_HEAD_BYTES_MAX {
            return Ok(None);
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "closed before the request head ended",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
        return Some(i);
    }
    buf.windows(2).position(|w| w == b"\n\n")
}

fn parse_request_line(head: &str) -> Option<(&str, &str)> {
    let line = head.lines().next()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?;
    let target = parts.next()?;
    let version = parts.next()?;
    if !version.starts_with("HTTP/1.") || parts.next().is_some() {
        return None;
    }
    Some((method, target))
}

fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .take(QUERY_ARGS_MAX)
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (
                percent_decode(&k.replace('+', " ")),
                percent_decode(&v.replace('+', " ")),
            )
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(b) = hex {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn write_response(stream: &mut TcpStream, r: &Response, head_only: bool) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        r.status,
        r.content_type,
        r.body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    if !head_only {
        stream.write_all(r.body.as_bytes()).await?;
    }
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines_and_queries() {
        assert_eq!(
            parse_request_line("GET /commands/stmk?traceMask=4 HTTP/1.1\r\nHost: x"),
            Some(("GET", "/commands/stmk?traceMask=4"))
        );
        assert_eq!(parse_request_line("GET /x"), None);
        assert_eq!(
            parse_query("traceMask=4&a=b%20c"),
            vec![("traceMask".into(), "4".into()), ("a".into(), "b c".into())]
        );
        assert_eq!(percent_decode("/commands/%6Dntr"), "/commands/mntr");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%4"), "%4");
    }

    #[test]
    fn head_end_is_found() {
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n\r\n"), Some(14));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\nHost"), None);
    }
}
