//! Test harness: starts the real parts the integration tests run against, on free
//! 127.0.0.1 ports, and stops them when dropped. Nothing here mocks anything:
//! [`S3Server`] is SeaweedFS (`weed mini`), [`Prometheus`] is Debian's Prometheus
//! 2.42, and [`promtool`] runs the real promtool. `tests/scripts/install-deps.sh`
//! (run by `make test`) installs them.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

pub mod dns;
pub mod lambda;

/// Ports handed out by [`free_port`]: below Linux's ephemeral range (32768–60999),
/// so an outgoing connection or a `:0` bind (of ours, or inside `weed mini` between
/// its own components) can't take a port between our check and the server's bind.
const PORT_RANGE: std::ops::Range<u32> = 20000..32000;

/// A free TCP port on 127.0.0.1 for a server a test is about to start: checked by
/// binding it, then released. Successive calls in one process never hand out the
/// same port twice (a process-wide cursor walks [`PORT_RANGE`] from a per-process
/// starting point), so parallel tests can't race each other for one port.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static CURSOR: AtomicU32 = AtomicU32::new(u32::MAX);
    let span = PORT_RANGE.end - PORT_RANGE.start;
    if CURSOR.load(Ordering::Relaxed) == u32::MAX {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let seed = (std::process::id().wrapping_mul(7919) ^ nanos) % span;
        let _ = CURSOR.compare_exchange(u32::MAX, seed, Ordering::Relaxed, Ordering::Relaxed);
    }
    for _ in 0..span {
        let n = CURSOR.fetch_add(1, Ordering::Relaxed) % span;
        let port = (PORT_RANGE.start + n) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding an ephemeral port on 127.0.0.1")
}

/// Waits until `addr` accepts TCP connections.
pub fn wait_for_port(addr: &str, timeout: Duration) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if std::net::TcpStream::connect(addr).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("{addr} did not accept connections within {timeout:?}")
}

/// A child process killed (SIGTERM, then SIGKILL) when dropped.
pub struct Proc {
    child: Option<Child>,
    name: String,
    log: PathBuf,
}

impl Proc {
    pub fn spawn(name: &str, cmd: &mut Command, log: PathBuf) -> Result<Proc> {
        let f = std::fs::File::create(&log)?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(f.try_clone()?)
            .stderr(f)
            .spawn()
            .with_context(|| {
                format!("starting {name} (is it installed? run tests/scripts/install-deps.sh)")
            })?;
        Ok(Proc {
            child: Some(child),
            name: name.to_string(),
            log,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    /// The process's combined output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM and waits up to `grace`, then SIGKILL.
    pub fn stop(&mut self, grace: Duration) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        let start = Instant::now();
        while start.elapsed() < grace {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
    }

    /// SIGKILL at once (crash tests).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Whether the process has exited.
    pub fn exited(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(Some(_))),
            None => true,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}

/// A real S3 server (SeaweedFS `weed mini`) with one bucket, on free loopback ports.
pub struct S3Server {
    pub proc: Proc,
    pub port: u16,
    pub bucket: String,
    pub access_key: String,
    pub secret_key: String,
    dir: tempfile::TempDir,
    extra_ports: Vec<u16>,
}

impl S3Server {
    pub fn start(bucket: &str) -> Result<S3Server> {
        // A port can still be taken by another program between our check and weed's
        // bind; weed then dies at once. Start again on fresh ports when that happens.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let dir = tempfile::tempdir()?;
            match Self::start_in(bucket, dir, None) {
                Err(e) if attempt < 3 && e.to_string().contains("address already in use") => {
                    eprintln!("weed mini lost a port race, retrying on fresh ports: {e}");
                }
                r => return r,
            }
        }
    }

    fn start_in(
        bucket: &str,
        dir: tempfile::TempDir,
        ports: Option<(u16, Vec<u16>)>,
    ) -> Result<S3Server> {
        let (port, extra_ports) =
            ports.unwrap_or_else(|| (free_port(), (0..8).map(|_| free_port()).collect()));
        let access_key = "aetheraccess".to_string();
        let secret_key = "aethersecret".to_string();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data)?;
        let mut cmd = Command::new("weed");
        cmd.env("AWS_ACCESS_KEY_ID", &access_key)
            .env("AWS_SECRET_ACCESS_KEY", &secret_key)
            .arg("mini")
            .arg(format!("-dir={}", data.display()))
            .arg("-ip=127.0.0.1")
            .arg("-ip.bind=127.0.0.1")
            .arg(format!("-s3.port={port}"))
            .arg(format!("-master.port={}", extra_ports[0]))
            .arg(format!("-volume.port={}", extra_ports[1]))
            .arg(format!("-filer.port={}", extra_ports[2]))
            .arg(format!("-master.port.grpc={}", extra_ports[3]))
            .arg(format!("-volume.port.grpc={}", extra_ports[4]))
            .arg(format!("-filer.port.grpc={}", extra_ports[5]))
            .arg(format!("-s3.port.grpc={}", extra_ports[6]))
            .arg(format!("-admin.port={}", extra_ports[7]))
            .arg(format!("-bucket={bucket}"))
            .arg("-s3.port.iceberg=0")
            .arg("-s3.port.lance=0")
            .arg("-webdav=false")
            .arg("-admin.ui=false")
            .arg("-master.telemetry=false");
        let log = dir.path().join("weed.log");
        let proc = Proc::spawn("weed mini", &mut cmd, log)?;
        let s = S3Server {
            proc,
            port,
            bucket: bucket.to_string(),
            access_key,
            secret_key,
            dir,
            extra_ports,
        };
        s.wait_ready(Duration::from_secs(60))?;
        Ok(s)
    }

    fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        // The S3 port opens before the bucket is usable; poll a request until it is
        // answered with anything but a connection error or 5xx.
        while start.elapsed() < timeout {
            let log = self.proc.log();
            if log.contains("address already in use") {
                bail!("S3 server could not bind its ports; log:\n{log}");
            }
            if let Ok(out) = Command::new("curl")
                .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
                .arg(format!("{}/{}", self.endpoint(), self.bucket))
                .output()
            {
                let code = String::from_utf8_lossy(&out.stdout).to_string();
                if !code.is_empty() && code != "000" && !code.starts_with('5') {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        bail!(
            "S3 server not ready in {timeout:?}; log:\n{}",
            self.proc.log()
        )
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Thanos objstore YAML for this server.
    pub fn objstore_yaml(&self) -> String {
        format!(
            "type: S3\nconfig:\n  bucket: {}\n  endpoint: 127.0.0.1:{}\n  region: us-east-1\n  access_key: {}\n  secret_key: {}\n  insecure: true\n",
            self.bucket, self.port, self.access_key, self.secret_key
        )
    }

    /// Stops the server, keeping its data (for outage tests).
    pub fn stop(&mut self) {
        self.proc.stop(Duration::from_secs(10));
    }

    /// Starts it again on the same ports and data.
    pub fn restart(self) -> Result<S3Server> {
        let S3Server {
            mut proc,
            port,
            bucket,
            dir,
            extra_ports,
            ..
        } = self;
        proc.stop(Duration::from_secs(10));
        drop(proc);
        Self::start_in(&bucket, dir, Some((port, extra_ports)))
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }
}

/// A real Prometheus server on a free port.
pub struct Prometheus {
    pub proc: Proc,
    pub port: u16,
    pub data_dir: PathBuf,
}

impl Prometheus {
    /// Starts Prometheus with `config` (YAML text) over `data_dir`, with admin API and
    /// lifecycle enabled, 100y retention, and `extra_args` (e.g. block duration flags).
    pub fn start(config: &str, data_dir: &Path, extra_args: &[&str]) -> Result<Prometheus> {
        let port = free_port();
        std::fs::create_dir_all(data_dir)?;
        let cfg = data_dir.join("../prometheus.yml");
        std::fs::write(&cfg, config)?;
        let mut cmd = Command::new("prometheus");
        cmd.arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg(format!("--storage.tsdb.path={}", data_dir.display()))
            .arg("--storage.tsdb.retention.time=100y")
            .arg("--web.enable-lifecycle")
            .arg("--web.enable-admin-api")
            .args(extra_args);
        let log = data_dir.join("../prometheus.log");
        let proc = Proc::spawn("prometheus", &mut cmd, log)?;
        let p = Prometheus {
            proc,
            port,
            data_dir: data_dir.to_path_buf(),
        };
        p.wait_ready(Duration::from_secs(60))?;
        Ok(p)
    }

    fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            let ok = Command::new("curl")
                .args(["-sf", "-o", "/dev/null"])
                .arg(format!("{}/-/ready", self.url()))
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        bail!(
            "Prometheus not ready in {timeout:?}; log:\n{}",
            self.proc.log()
        )
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// GET `path` (e.g. `/api/v1/query?query=up`) and return the body.
    pub fn get(&self, path_and_query: &str) -> Result<String> {
        let out = Command::new("curl")
            .args(["-sfg"])
            .arg(format!("{}{}", self.url(), path_and_query))
            .output()?;
        if !out.status.success() {
            bail!(
                "GET {path_and_query} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8(out.stdout)?)
    }
}

/// GET `url` with curl: the HTTP status (0 when nothing answered) and the body.
pub fn curl_get(url: &str) -> (u16, String) {
    let Ok(out) = Command::new("curl")
        .args(["-sg", "-w", "\n%{http_code}"])
        .arg(url)
        .output()
    else {
        return (0, String::new());
    };
    let s = String::from_utf8_lossy(&out.stdout);
    match s.rsplit_once('\n') {
        Some((body, code)) => (code.parse().unwrap_or(0), body.to_string()),
        None => (0, s.into_owned()),
    }
}

/// Runs `promtool` with `args`; fails with its output when it exits non-zero.
pub fn promtool(args: &[&str]) -> Result<Output> {
    let out = Command::new("promtool")
        .args(args)
        .output()
        .context("running promtool (run tests/scripts/install-deps.sh)")?;
    if !out.status.success() {
        bail!(
            "promtool {:?} failed: {}\n{}",
            args,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

/// `promtool tsdb dump` of a copy of `data_dir` (dump writes into the folder it reads,
/// and prints nothing unless a `wal` directory exists), as text.
pub fn promtool_dump(data_dir: &Path, extra: &[&str]) -> Result<String> {
    let tmp = tempfile::tempdir()?;
    copy_dir(data_dir, tmp.path())?;
    std::fs::create_dir_all(tmp.path().join("wal"))?;
    let dir = tmp.path().to_string_lossy().to_string();
    let mut args = vec!["tsdb", "dump"];
    args.extend_from_slice(extra);
    args.push(&dir);
    let out = promtool(&args)?;
    Ok(String::from_utf8(out.stdout)?)
}

/// Recursively copies a directory.
pub fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let target = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &target)?;
        } else {
            std::fs::copy(e.path(), &target)?;
        }
    }
    Ok(())
}

/// The `aether` binary built by cargo for this test run (`CARGO_BIN_EXE_aether` is
/// only set for the CLI crate's own tests, so other crates find it next to the test
/// executable).
pub fn aether_bin() -> PathBuf {
    if let Some(p) = option_env!("CARGO_BIN_EXE_aether") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current test executable");
    let dir = exe
        .parent()
        .and_then(|p| p.parent())
        .expect("target/<profile>/deps");
    dir.join("aether")
}
