//! Helpers the builder's end-to-end test files share: the skip rule, running a command, a
//! build context with its own store, reading an image back from an OCI layout, and the busybox
//! base image (`FROM scratch` + `COPY rootfs/ /`) as an OCI layout made once per test process,
//! and a witness server that sees which RUN steps ran.

pub use crate::{binary_path, builder_path, busybox_rootfs, is_root, Out};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;

/// Skips (with the reason) unless root and both binaries exist.
pub fn ready(test: &str) -> bool {
    if !is_root() {
        println!("SKIP {test}: needs root (euid is not 0)");
        return false;
    }
    for (what, p) in [("brig-build", builder_path()), ("runtime", binary_path())] {
        if !p.is_file() {
            println!("SKIP {test}: {what} binary {} not found", p.display());
            return false;
        }
    }
    true
}

pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

pub fn run(cmd: &mut Command) -> Out {
    let cmdline = format!("{cmd:?}");
    let o = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmdline}: {e}"));
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        cmdline,
    }
}

/// A context whose two RUN steps (each after its own COPY) tell the witness "one" and "two"
/// and record when they ran: what the cache export/import tests build.
pub fn two_run_steps(w: &Witness) -> Ctx {
    let c = Ctx::new(&format!(
        "{}\nCOPY a.txt /a\nRUN {} && date +%s%N > /t1\nENV E=1\nCOPY b.txt /b\nRUN {} && date +%s%N > /t2\n",
        from_base(),
        w.hit("one"),
        w.hit("two")
    ));
    c.write("a.txt", "a");
    c.write("b.txt", "b");
    c
}

/// A build context and a private store.
pub struct Ctx {
    pub dir: tempfile::TempDir,
}

impl Ctx {
    pub fn new(dockerfile: &str) -> Ctx {
        let dir = tempfile::Builder::new()
            .prefix("brig-build-test-")
            .tempdir()
            .unwrap();
        fs::create_dir(dir.path().join("ctx")).unwrap();
        fs::write(dir.path().join("ctx/Dockerfile"), dockerfile).unwrap();
        Ctx { dir }
    }

    pub fn ctx(&self) -> PathBuf {
        self.dir.path().join("ctx")
    }

    pub fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    pub fn write(&self, rel: &str, content: &str) {
        let p = self.ctx().join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    }

    /// `brig-build --store S build ARGS CONTEXT` with the runtime under test.
    pub fn build(&self, args: &[&str]) -> Out {
        self.build_with(&binary_path(), args)
    }

    pub fn build_with(&self, runtime: &Path, args: &[&str]) -> Out {
        run(Command::new(builder_path())
            .arg("--store")
            .arg(self.store())
            .arg("build")
            .arg("--runtime")
            .arg(runtime)
            .args(args)
            .arg(self.ctx()))
    }

    /// Builds with an OCI layout output at `<tmp>/oci` and returns the image's config.
    pub fn build_oci(&self, args: &[&str]) -> Image {
        let dest = format!("type=oci,dest={},name=t:1", self.path("oci").display());
        let mut a = vec!["-o", &dest];
        a.extend_from_slice(args);
        self.build(&a).assert_ok();
        Image::open(&self.path("oci"), "1")
    }
}

/// An image read back from an OCI layout.
pub struct Image {
    pub dir: PathBuf,
    pub manifest: Value,
    pub config: Value,
}

impl Image {
    pub fn open(dir: &Path, tag: &str) -> Image {
        let idx: Value =
            serde_json::from_slice(&fs::read(dir.join("index.json")).unwrap()).unwrap();
        let m = idx["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
            .unwrap_or_else(|| panic!("no {tag} in {idx}"));
        let blob = |d: &Value| dir.join("blobs/sha256").join(&d.as_str().unwrap()[7..]);
        let manifest: Value =
            serde_json::from_slice(&fs::read(blob(&m["digest"])).unwrap()).unwrap();
        let config: Value =
            serde_json::from_slice(&fs::read(blob(&manifest["config"]["digest"])).unwrap())
                .unwrap();
        Image {
            dir: dir.to_path_buf(),
            manifest,
            config,
        }
    }

    pub fn layers(&self) -> usize {
        self.manifest["layers"].as_array().unwrap().len()
    }

    /// `tar -tzv --numeric-owner` lines of layer `i` (negative: from the end).
    pub fn layer_listing(&self, i: isize) -> Vec<String> {
        let n = self.layers() as isize;
        let i = if i < 0 { n + i } else { i } as usize;
        let d = self.manifest["layers"][i]["digest"].as_str().unwrap();
        let out = run(Command::new("tar")
            .args(["-tzv", "--numeric-owner", "-f"])
            .arg(self.dir.join("blobs/sha256").join(&d[7..])));
        out.assert_ok();
        out.stdout.lines().map(str::to_string).collect()
    }

    /// Extracts one file of layer `i` to a string.
    pub fn layer_file(&self, i: isize, path: &str) -> String {
        let n = self.layers() as isize;
        let i = if i < 0 { n + i } else { i } as usize;
        let d = self.manifest["layers"][i]["digest"].as_str().unwrap();
        let out = run(Command::new("tar")
            .args(["-xzO", "-f"])
            .arg(self.dir.join("blobs/sha256").join(&d[7..]))
            .arg(path));
        out.assert_ok();
        out.stdout
    }
}

/// The busybox base image as an OCI layout, made once per test process in cargo's per-test
/// temporary dir (a fixed path, so runs do not pile up copies).
pub fn base() -> &'static Path {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    BASE.get_or_init(|| {
        let scratch = std::env::temp_dir().join("brig-tests");
        fs::create_dir_all(&scratch).expect("mkdir $TMPDIR/brig-tests");
        let dir = scratch.join(format!("builder-base-{}", std::process::id()));
        let c = Ctx::new("FROM scratch\nCOPY rootfs/ /\nCMD [\"sh\"]\n");
        busybox_rootfs(&c.ctx().join("rootfs"));
        let dest = format!(
            "type=oci,dest={},name=busybox:base",
            dir.join("oci").display()
        );
        c.build(&["-o", &dest]).assert_ok();
        // Copies of test processes that are gone go; those of running ones (another cargo
        // test, a CI clone beside this one) stay.
        if let Ok(rd) = fs::read_dir(&scratch) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                let Some(pid) = n.strip_prefix("builder-base-") else {
                    continue;
                };
                let alive = pid
                    .parse::<u32>()
                    .is_ok_and(|p| Path::new(&format!("/proc/{p}")).exists());
                if !alive && e.path() != dir {
                    let _ = fs::remove_dir_all(e.path());
                }
            }
        }
        dir
    })
}

pub fn from_base() -> String {
    format!("FROM oci-layout://{}:base", base().join("oci").display())
}

/// An HTTP server on 127.0.0.1 that counts `GET /hit/NAME` and serves `GET /meet/ME/OTHER`:
/// records ME, waits up to 60 s for OTHER (generous: this machine may be loaded), answers 200
/// if OTHER came, else 504.
pub struct Witness {
    pub port: u16,
    seen: Arc<(Mutex<HashMap<String, usize>>, Condvar)>,
}

impl Witness {
    pub fn start() -> Witness {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let seen: Arc<(Mutex<HashMap<String, usize>>, Condvar)> = Arc::default();
        let s = seen.clone();
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(mut conn) = conn else { continue };
                let s = s.clone();
                std::thread::spawn(move || {
                    let mut line = String::new();
                    if BufReader::new(&conn).read_line(&mut line).is_err() {
                        return;
                    }
                    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
                    let (lock, cv) = &*s;
                    let ok = match parts.as_slice() {
                        ["hit", name] => {
                            *lock.lock().unwrap().entry(name.to_string()).or_default() += 1;
                            true
                        }
                        ["meet", me, other] => {
                            *lock.lock().unwrap().entry(me.to_string()).or_default() += 1;
                            cv.notify_all();
                            let g = lock.lock().unwrap();
                            let (g, _) = cv
                                .wait_timeout_while(g, Duration::from_secs(60), |m| {
                                    !m.contains_key(*other)
                                })
                                .unwrap();
                            g.contains_key(*other)
                        }
                        _ => false,
                    };
                    let status = if ok { "200 OK" } else { "504 Timeout" };
                    let _ = write!(
                        conn,
                        "HTTP/1.0 {status}\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n"
                    );
                });
            }
        });
        Witness { port, seen }
    }

    /// A shell command that tells the witness step `name` ran.
    pub fn hit(&self, name: &str) -> String {
        format!(
            "wget -q -O /dev/null http://127.0.0.1:{}/hit/{name}",
            self.port
        )
    }

    /// A shell command that announces `me` and waits (at most 60 s) for `other` to announce
    /// itself: it fails unless both run at the same time.
    pub fn meet(&self, me: &str, other: &str) -> String {
        format!(
            "wget -q -O /dev/null http://127.0.0.1:{}/meet/{me}/{other}",
            self.port
        )
    }

    pub fn count(&self, name: &str) -> usize {
        self.seen.0.lock().unwrap().get(name).copied().unwrap_or(0)
    }

    pub fn reset(&self) {
        self.seen.0.lock().unwrap().clear();
    }
}

/// Sets xattr `name` of `p` (not following a final symlink).
pub fn set_xattr(p: &Path, name: &str, value: &[u8]) {
    let path = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
    let cname = std::ffi::CString::new(name).unwrap();
    // SAFETY: valid C strings and a buffer of the given length.
    let rc = unsafe {
        libc::lsetxattr(
            path.as_ptr(),
            cname.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(
        rc,
        0,
        "setxattr {} {name}: {}",
        p.display(),
        std::io::Error::last_os_error()
    );
}

/// The xattrs of `p` (not following a final symlink), name → value.
pub fn xattrs_of(p: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(path) = std::ffi::CString::new(p.to_str().unwrap()) else {
        return out;
    };
    let mut names = vec![0u8; 65536];
    // SAFETY: a valid C string and a buffer of the given length.
    let n = unsafe { libc::llistxattr(path.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if n <= 0 {
        return out;
    }
    for name in names[..n as usize]
        .split(|&b| b == 0)
        .filter(|n| !n.is_empty())
    {
        let cname = std::ffi::CString::new(name).unwrap();
        let mut v = vec![0u8; 65536];
        // SAFETY: valid C strings and a buffer of the given length.
        let m = unsafe {
            libc::lgetxattr(
                path.as_ptr(),
                cname.as_ptr(),
                v.as_mut_ptr().cast(),
                v.len(),
            )
        };
        if m >= 0 {
            v.truncate(m as usize);
            out.insert(String::from_utf8_lossy(name).into_owned(), v);
        }
    }
    out
}

/// The config fields the differential tests compare (those docker fills), keyed
/// `config.FIELD`, or `config.FIELD.KEY` for maps (so one allowed key does not hide the
/// others), absent and empty alike. `env_as_set` sorts Env (for a builder that orders one
/// multi-pair ENV at random).
pub fn compared_config(cfg: &Value, env_as_set: bool) -> BTreeMap<String, Value> {
    let c = &cfg["config"];
    let mut m = BTreeMap::new();
    for f in [
        "Env",
        "Cmd",
        "Entrypoint",
        "WorkingDir",
        "User",
        "ExposedPorts",
        "Volumes",
        "Labels",
        "StopSignal",
    ] {
        let mut v = c[f].clone();
        if let (true, Some(a)) = (env_as_set && f == "Env", v.as_array_mut()) {
            a.sort_by_key(|e| e.to_string());
        }
        let empty = v.is_null()
            || v.as_str() == Some("")
            || v.as_array().is_some_and(|a| a.is_empty())
            || v.as_object().is_some_and(|o| o.is_empty());
        if let Some(o) = v.as_object().filter(|_| f != "Env") {
            for (k, val) in o {
                m.insert(format!("config.{f}.{k}"), val.clone());
            }
        } else if !empty {
            m.insert(format!("config.{f}"), v);
        }
    }
    m
}

/// A debootstrap minbase rootfs of the host's Debian release as a .tar.xz: the conformance
/// suite's image when `make conformance` made it already, else made once in `tmp_dir` (a test's
/// `CARGO_TARGET_TMPDIR`).
pub fn debian_tarball(tmp_dir: &Path) -> Result<PathBuf, String> {
    let conformance = crate::workspace_dir().join("conformance/work/images/debian-amd64.tar.xz");
    if conformance.is_file() {
        return Ok(conformance);
    }
    let cached = tmp_dir.join("debian-minbase.tar.xz");
    if cached.is_file() {
        return Ok(cached);
    }
    if !have("debootstrap") {
        return Err("debootstrap is not installed (make deps installs it)".into());
    }
    let mirror = fs::read_to_string("/etc/apt/sources.list.d/debian.sources")
        .ok()
        .and_then(|s| {
            s.lines()
                .filter_map(|l| l.strip_prefix("URIs:"))
                .map(str::trim)
                .find(|u| !u.contains("security"))
                .map(str::to_string)
        })
        .unwrap_or_else(|| "http://deb.debian.org/debian".into());
    let codename = fs::read_to_string("/etc/os-release")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME=").map(str::to_string))
        .unwrap_or_else(|| "bookworm".into());
    let tmp = tempfile::Builder::new()
        .prefix("debian-minbase-")
        .tempdir_in(tmp_dir)
        .unwrap();
    let rootfs = tmp.path().join("rootfs");
    let out = run(Command::new("debootstrap")
        .args(["--variant=minbase", &codename])
        .arg(&rootfs)
        .arg(&mirror));
    if !out.success() {
        return Err(format!("debootstrap failed: {out}"));
    }
    let part = tmp.path().join("out.tar.xz");
    let out = run(Command::new("sh").arg("-c").arg(format!(
        "tar --numeric-owner -C '{}' -cf - . | xz -T0 > '{}'",
        rootfs.display(),
        part.display()
    )));
    out.assert_ok();
    fs::rename(&part, &cached).unwrap();
    Ok(cached)
}
