//! Operations: health checks, reflection, Prometheus metrics, structured logs.

use std::io::{Read, Write};
use std::net::TcpStream;

use amber_proto::v1 as pb;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

use super::harness::Server;
use crate::common::{Rng, sample_tree};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn health_and_reflection_answer_without_a_token() {
    let server = Server::start();
    let rt = runtime();
    rt.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(server.url.clone())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut health = HealthClient::new(channel.clone());
        for service in [
            "",
            "amber.v1.Ingest",
            "amber.v1.Restore",
            "amber.v1.Catalog",
            "amber.v1.Admin",
        ] {
            let r = health
                .check(HealthCheckRequest {
                    service: service.into(),
                })
                .await
                .unwrap_or_else(|s| panic!("health of {service:?}: {s}"))
                .into_inner();
            assert_eq!(r.status, ServingStatus::Serving as i32, "{service:?}");
        }
        let mut reflection = ServerReflectionClient::new(channel);
        let req = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut answers = reflection
            .server_reflection_info(tokio_stream::iter(vec![req]))
            .await
            .unwrap()
            .into_inner();
        let first = answers.message().await.unwrap().unwrap();
        let Some(MessageResponse::ListServicesResponse(list)) = first.message_response else {
            panic!("no service list: {first:?}");
        };
        let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
        for want in [
            "amber.v1.Ingest",
            "amber.v1.Restore",
            "amber.v1.Catalog",
            "amber.v1.Admin",
            "grpc.health.v1.Health",
        ] {
            assert!(names.iter().any(|n| n == want), "{want} missing from {names:?}");
        }
        // v1alpha too (Python's grpcio-reflection and older grpcurl speak only that).
        use tonic_reflection::pb::v1alpha as alpha;
        let mut old = alpha::server_reflection_client::ServerReflectionClient::new(
            tonic::transport::Endpoint::from_shared(server.url.clone())
                .unwrap()
                .connect()
                .await
                .unwrap(),
        );
        let req = alpha::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(alpha::server_reflection_request::MessageRequest::ListServices(
                String::new(),
            )),
        };
        let first = old
            .server_reflection_info(tokio_stream::iter(vec![req]))
            .await
            .expect("v1alpha reflection is served")
            .into_inner()
            .message()
            .await
            .unwrap()
            .unwrap();
        let Some(alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
            first.message_response
        else {
            panic!("no v1alpha service list: {first:?}");
        };
        assert!(list.service.iter().any(|s| s.name == "amber.v1.Ingest"), "{list:?}");
        // The Amber services themselves still need a token.
        let mut catalog = pb::catalog_client::CatalogClient::connect(server.url.clone())
            .await
            .unwrap();
        let err = catalog.get_vault(pb::GetVaultRequest {}).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
    });
}

fn get(addr: &str, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head.to_string(), body.to_string())
}

/// `/metrics` once no ingest stream is open: a push thread ends its stream just after the
/// client has its commit, so the gauge may lag the client by a moment.
fn settled_metrics(addr: &str) -> (String, String) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (head, body) = get(addr, "/metrics");
        if metric(&body, "amber_streams_active") == 0.0 || std::time::Instant::now() > deadline {
            return (head, body);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn metric(body: &str, name: &str) -> f64 {
    body.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{body}"))
}

#[test]
fn metrics_on_their_own_port_and_json_logs_with_request_ids() {
    let server = Server::start_with(&[], &[("AMBER_METRICS_LISTEN", "127.0.0.1:0")]);
    let addr = server
        .stdout_lines
        .iter()
        .find_map(|l| l.strip_prefix("metrics on http://"))
        .and_then(|l| l.strip_suffix("/metrics"))
        .expect("metrics address printed")
        .to_string();
    let admin = server.admin();
    let src = server.scratch("src");
    sample_tree(&src, 7);
    let mut rng = Rng::new(1);
    crate::common::write_random(&src.join("big.bin"), 2_000_000, &mut rng);
    let first = server.push(&admin, &[src.to_str().unwrap()]);
    server.push(&admin, &[src.to_str().unwrap()]);
    let denied = server.run("amber1_0000000000000000_00", &["snapshots"]);
    assert_ne!(denied.code, Some(0));

    let (head, body) = settled_metrics(&addr);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.to_ascii_lowercase().contains("text/plain"), "{head}");
    let received = metric(&body, "amber_bytes_received_total");
    assert_eq!(received as u64, first["bytes_received_by_server"].as_u64().unwrap());
    assert!(metric(&body, "amber_bytes_new_total") > 0.0);
    assert!(metric(&body, "amber_dedup_ratio") > 1.0, "two pushes of one tree dedup");
    assert_eq!(metric(&body, "amber_streams_active"), 0.0);
    assert!(body.contains("amber_errors_total{kind=\"unauthenticated\"}"), "{body}");
    assert!(
        body.contains("amber_request_duration_seconds_bucket{method=\"/amber.v1.Ingest/Push\""),
        "{body}"
    );
    let (head, _) = get(&addr, "/nothing");
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");

    let logs = server.stderr();
    let calls: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|v: &serde_json::Value| v["msg"] == "call" || v["msg"] == "call refused")
        .collect();
    assert!(calls.len() >= 3, "{logs}");
    assert!(calls.iter().any(|c| c["msg"] == "call refused"), "{logs}");
    for c in &calls {
        assert_eq!(c["request_id"].as_str().map(str::len), Some(16), "{c}");
        assert!(c["ts"].as_str().is_some() && c["level"].as_str().is_some(), "{c}");
    }
    assert!(
        calls
            .iter()
            .any(|c| c["method"] == "/amber.v1.Ingest/Push" && c["result"] == "ok")
    );
}
