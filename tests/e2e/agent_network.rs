//! The networks of real sites: an update server with a certificate from an internal CA
//! (`update-server --tls-cert/--tls-key`, the agent's `--ca-bundle`), and a real forward proxy
//! (`tinyproxy`) between the agent and the server (`HTTPS_PROXY`, `NO_PROXY`). Everything on
//! loopback: the CA and the certificate are made here, for `127.0.0.1`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use e2e::fleet::{free_port, system_tool};
use e2e::world::World;
use e2e::{agent_at_version, bin, Sandbox};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

const V1: &str = "1.0.0";
const V2: &str = "2.0.0";

/// How long a test waits for an agent to start or update.
const UPDATE_WAIT: Duration = Duration::from_secs(90);

/// An internal CA and the update server's certificate it issued (for `127.0.0.1` and
/// `localhost`), as PEM files.
struct InternalCa {
    /// The CA certificate: what `--ca-bundle` names.
    bundle: PathBuf,
    /// The server's certificate.
    cert: PathBuf,
    /// The server's private key.
    key: PathBuf,
}

impl InternalCa {
    /// Makes the CA and the server certificate in `dir`.
    fn new(dir: &Path) -> Self {
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "e2e internal CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().expect("CA key"))
            .expect("CA certificate");
        let mut server = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".into()])
            .expect("server params");
        server
            .distinguished_name
            .push(DnType::CommonName, "update-server");
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_key = KeyPair::generate().expect("server key");
        let server_cert = server
            .signed_by(&server_key, &ca)
            .expect("server certificate");
        let write = |name: &str, pem: String| {
            let path = dir.join(name);
            std::fs::write(&path, pem).expect("write PEM");
            path
        };
        InternalCa {
            bundle: write("internal-ca.pem", ca.pem()),
            cert: write("update-server.crt", server_cert.pem()),
            key: write("update-server.key", server_key.serialize_pem()),
        }
    }
}

/// A world whose update server serves HTTPS with a certificate of `ca`.
fn tls_world(ca: &InternalCa) -> World {
    let world = World::builder()
        .server_args(&[
            "--tls-cert",
            &ca.cert.to_string_lossy(),
            "--tls-key",
            &ca.key.to_string_lossy(),
        ])
        .server_ca(&ca.bundle)
        .start();
    assert!(
        world.server.url.starts_with("https://127.0.0.1:"),
        "{}",
        world.server.url
    );
    world
}

/// A real `tinyproxy` on a free loopback port, logging every connection and request.
struct ForwardProxy {
    child: Child,
    /// `http://127.0.0.1:PORT`: what `HTTPS_PROXY` names.
    url: String,
    log: PathBuf,
}

impl ForwardProxy {
    fn start(dir: &Path) -> Self {
        let program = system_tool("tinyproxy", "tinyproxy");
        let port = free_port();
        let log = dir.join("tinyproxy.log");
        let config = dir.join("tinyproxy.conf");
        // No `ConnectPort` line: CONNECT to any port (the server's is a free one, not 443).
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListen 127.0.0.1\nAllow 127.0.0.1\nTimeout 600\nMaxClients 20\n\
                 LogLevel Connect\nLogFile \"{}\"\n",
                log.display()
            ),
        )
        .expect("tinyproxy config");
        let child = Command::new(program)
            .args(["-d", "-c"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tinyproxy");
        let proxy = ForwardProxy {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "tinyproxy did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        proxy
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The tunnels it opened to `authority` (`host:port`).
    fn connects_to(&self, authority: &str) -> usize {
        let request = format!("CONNECT {authority} HTTP/1.1");
        self.log()
            .lines()
            .filter(|line| line.contains(&request))
            .count()
    }
}

impl Drop for ForwardProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn with_the_internal_ca_bundle_the_agent_updates_over_https_without_it_refuses_as_tls() {
    let certs = tempfile::tempdir().expect("temp dir");
    let ca = InternalCa::new(certs.path());
    let w = tls_world(&ca);
    let bundle = ca.bundle.to_string_lossy().into_owned();
    let trusting = w
        .agent(V1)
        .dir(&w.sandbox.join("trusting"))
        .flags(&["--ca-bundle", &bundle])
        .start();
    let untrusting = w.agent(V1).dir(&w.sandbox.join("untrusting")).start();
    trusting.wait_until("v1 serving", UPDATE_WAIT, |a| a.serves_version(V1));

    w.roll_out(V2, &agent_at_version(V2), 100);
    trusting.wait_until("v2 serving over https", UPDATE_WAIT, |a| {
        a.serves_version(V2)
    });
    w.wait_for_report(&trusting, &format!("success {V1}->{V2}"), UPDATE_WAIT);

    // The agent without the bundle never got past the handshake: the reason says why and
    // what to do, and it installed nothing.
    untrusting.wait_until("a tls refusal logged", UPDATE_WAIT, |a| {
        a.log().contains(r#""reason":"tls""#)
    });
    let log = untrusting.log();
    let refusal = log
        .lines()
        .find(|line| line.contains(r#""reason":"tls""#))
        .expect("refusal line");
    assert!(refusal.contains("UnknownIssuer"), "{refusal}");
    assert!(refusal.contains("--ca-bundle"), "{refusal}");
    assert!(
        untrusting
            .installed_version()
            .starts_with(&format!("worker-agent {V1} ")),
        "{}",
        untrusting.installed_version()
    );
    assert_eq!(
        w.server.reports().lines().count(),
        1,
        "only the trusting agent reported: {}",
        w.server.reports()
    );
}

#[test]
fn a_missing_or_unusable_ca_bundle_is_refused_once_as_a_config_error() {
    let sandbox = Sandbox::new();
    let not_pem = sandbox.write("notes.txt", "this is not a certificate\n");
    let missing = sandbox.join("missing.pem");
    for (bundle, says) in [
        (&missing, "No such file"),
        (&not_pem, "holds no PEM certificate"),
    ] {
        let bundle = bundle.to_string_lossy();
        let run = sandbox.run(
            &bin("worker-agent"),
            &[
                "run",
                "--update-server",
                "https://127.0.0.1:9",
                "--token",
                "t",
                "--root",
                "root.json",
                "--state-dir",
                &sandbox.join("state").to_string_lossy(),
                "--ca-bundle",
                &bundle,
            ],
        );
        assert_eq!(run.output.status.code(), Some(78), "{}", run.stderr());
        let stderr = run.stderr();
        assert!(stderr.contains(&*bundle), "{stderr}");
        assert!(stderr.contains(says), "{stderr}");
    }
}

#[test]
fn the_agent_reaches_the_https_server_through_https_proxy_and_no_proxy_bypasses_it() {
    let certs = tempfile::tempdir().expect("temp dir");
    let ca = InternalCa::new(certs.path());
    let w = tls_world(&ca);
    let proxy = ForwardProxy::start(w.sandbox.path());
    let bundle = ca.bundle.to_string_lossy().into_owned();
    let server = w.server.url.trim_start_matches("https://").to_owned();

    // Through the proxy: the whole update (register, poll, download, report) of v1 to v2.
    let proxied = w
        .agent(V1)
        .dir(&w.sandbox.join("proxied"))
        .flags(&["--ca-bundle", &bundle])
        .env(&[("HTTPS_PROXY", &proxy.url), ("NO_PROXY", "")])
        .start();
    proxied.wait_until("v1 serving", UPDATE_WAIT, |a| a.serves_version(V1));
    w.roll_out(V2, &agent_at_version(V2), 100);
    proxied.wait_until("v2 serving through the proxy", UPDATE_WAIT, |a| {
        a.serves_version(V2)
    });
    w.wait_for_report(&proxied, &format!("success {V1}->{V2}"), UPDATE_WAIT);
    let tunnels = proxy.connects_to(&server);
    assert!(
        tunnels >= 1,
        "the proxy saw no CONNECT {server}:\n{}",
        proxy.log()
    );
    // The tunnel carries TLS: the worker token reached the server, never the proxy.
    assert!(!proxy.log().contains(&w.server.worker_token));
    drop(proxied);

    // `NO_PROXY` naming the server: the same update, and not one more tunnel.
    let host = server.split(':').next().expect("host");
    let direct = w
        .agent(V1)
        .dir(&w.sandbox.join("direct"))
        .flags(&["--ca-bundle", &bundle])
        .env(&[("HTTPS_PROXY", &proxy.url), ("NO_PROXY", host)])
        .start();
    direct.wait_until("v2 serving, bypassing the proxy", UPDATE_WAIT, |a| {
        a.serves_version(V2)
    });
    direct.wait_until("a second success report", UPDATE_WAIT, |_| {
        w.server
            .reports()
            .matches(&format!("success {V1}->{V2}"))
            .count()
            == 2
    });
    assert_eq!(
        proxy.connects_to(&server),
        tunnels,
        "the bypassing agent went through the proxy:\n{}",
        proxy.log()
    );
}

#[test]
fn update_server_with_an_unusable_tls_key_refuses_to_start_naming_the_files() {
    let sandbox = Sandbox::new();
    let ca = InternalCa::new(sandbox.path());
    let not_a_key = sandbox.write("not-a.key", "not a key\n");
    let run = sandbox.run(
        &bin("update-server"),
        &[
            "serve",
            "--data-dir",
            "data",
            "--root",
            "root.json",
            "--channel-key",
            "channel.key",
            "--admin-token-file",
            "admin.tokens",
            "--worker-token-file",
            "worker.tokens",
            "--tls-cert",
            &ca.cert.to_string_lossy(),
            "--tls-key",
            &not_a_key.to_string_lossy(),
        ],
    );
    let stderr = run.failure();
    assert!(stderr.contains("cannot serve HTTPS"), "{stderr}");
    assert!(stderr.contains(&*not_a_key.to_string_lossy()), "{stderr}");
    // One without the other is a usage error.
    let run = sandbox.run(
        &bin("update-server"),
        &["serve", "--tls-cert", &ca.cert.to_string_lossy()],
    );
    assert!(run.failure().contains("--tls-key"), "{}", run.stderr());
}

#[test]
fn worker_release_reaches_the_https_admin_api_with_the_ca_bundle_only() {
    let certs = tempfile::tempdir().expect("temp dir");
    let ca = InternalCa::new(certs.path());
    let w = tls_world(&ca);
    w.sandbox
        .write("admin.token", format!("{}\n", w.server.admin_token));
    let status = |extra: &[&str]| {
        let mut args = vec![
            "status",
            "--server",
            &w.server.url,
            "--token-file",
            "admin.token",
        ];
        args.extend_from_slice(extra);
        w.sandbox.release_cli(&args)
    };
    let bundle = ca.bundle.to_string_lossy();
    let trusted = status(&["--ca-bundle", &bundle]).success();
    assert!(trusted.contains("root version: 1"), "{trusted}");
    let refused = status(&[]).failure();
    assert!(refused.contains("UnknownIssuer"), "{refused}");
    let empty = w.sandbox.write("empty.pem", "");
    let refused = status(&["--ca-bundle", &empty.to_string_lossy()]).failure();
    assert!(refused.contains("holds no PEM certificate"), "{refused}");
}
