//! The shim's side of containerd's shim v2 protocol: the `start`
//! subcommand (start one shim per group, print its address), the `delete`
//! subcommand (clean up after a shim that died), and the daemon serving
//! the Task service until Shutdown.
//!
//! We bootstrap ourselves rather than through `containerd_shim::run`
//! because that one speaks only what containerd 2.x expects: it serves the
//! Task service as `containerd.task.v3.Task` and answers `start` with JSON,
//! while containerd 1.6 (Debian 12's) calls `containerd.task.v2.Task` and
//! reads a bare address. The two Task APIs share their messages, so the
//! daemon serves both names; a bare address is understood by every
//! containerd that passes the start parameters in flags and environment
//! (all up to 2.2).

use std::collections::HashMap;
use std::io::Write;
use std::os::fd::IntoRawFd;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use containerd_shim::util::write_address;
use containerd_shim::{spawn, DeleteResponse, ExitSignal, Flags, StartOpts};
use containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::shim_sync::create_task;
use containerd_shim_protos::ttrpc::{MethodHandler, Server};

use crate::error::{Error, IoContext, Result};
use crate::options;
use crate::reaper::reaper;
use crate::runtime::Runtime;
use crate::service::{unmount_rootfs, Service};

/// The runtime name containerd knows this shim by.
pub const RUNTIME_ID: &str = "io.containerd.brig.v2";

/// Annotation by which the CRI names a container's pod sandbox: the
/// containers of one pod share one shim.
const SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";

/// Runs the action containerd asked for; the shim's whole life.
pub fn main(args: &[String]) -> Result<()> {
    let flags = containerd_shim::parse(args).map_err(|e| Error::InvalidArgument(e.to_string()))?;
    if flags.version {
        println!("{RUNTIME_ID} version {}", env!("CARGO_PKG_VERSION"));
        return Ok(());
    }
    if flags.namespace.is_empty() {
        return Err(Error::InvalidArgument("-namespace is required".into()));
    }
    // A handler (not SIG_IGN, which the containers would inherit) keeps a
    // closed FIFO or a terminal's signals from killing the shim.
    for sig in [libc::SIGPIPE, libc::SIGTERM, libc::SIGINT] {
        signal_hook::flag::register(sig, Arc::new(AtomicBool::new(false)))
            .ctx(|| format!("install a handler for signal {sig}"))?;
    }
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) takes no pointers.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(Error::io(
            "become a subreaper",
            std::io::Error::last_os_error(),
        ));
    }
    reaper();
    let bundle = if flags.bundle.is_empty() {
        std::env::current_dir().ctx(|| "current directory".to_string())?
    } else {
        PathBuf::from(&flags.bundle)
    };
    match flags.action.as_str() {
        "start" => start(&flags, &bundle),
        "delete" => delete(&flags, &bundle),
        _ => serve(&flags),
    }
}

/// The group a container's shim serves: its pod sandbox, or itself.
fn grouping(bundle: &Path, id: &str) -> String {
    std::fs::read_to_string(bundle.join("config.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|spec| spec["annotations"][SANDBOX_ID].as_str().map(str::to_string))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| id.to_string())
}

fn start(flags: &Flags, bundle: &Path) -> Result<()> {
    let opts = StartOpts {
        id: flags.id.clone(),
        publish_binary: flags.publish_binary.clone(),
        address: flags.address.clone(),
        ttrpc_address: std::env::var("TTRPC_ADDRESS").unwrap_or_default(),
        namespace: flags.namespace.clone(),
        debug: flags.debug,
        ..Default::default()
    };
    let group = grouping(bundle, &flags.id);
    let start_options = start_options()?;
    let (pid, address) = spawn(opts, &group, Vec::new()).map_err(Error::from_shim)?;
    if !start_options.shim_cgroup.is_empty() {
        crate::cgroup::join(&start_options.shim_cgroup, pid)?;
    }
    write_address(&address).map_err(Error::from_shim)?;
    let mut out = std::io::stdout().lock();
    out.write_all(address.as_bytes())
        .and_then(|()| out.flush())
        .ctx(|| "write the shim address".to_string())
}

/// The runtime options containerd writes to `start`'s stdin (a protobuf Any; nothing when
/// the container has none).
fn start_options() -> Result<containerd_shim_protos::shim::oci::Options> {
    use containerd_shim_protos::protobuf::well_known_types::any::Any;
    use std::io::Read;
    // SAFETY: isatty has no preconditions.
    if unsafe { libc::isatty(0) } == 1 {
        return Ok(Default::default());
    }
    let mut bytes = Vec::new();
    std::io::stdin()
        .read_to_end(&mut bytes)
        .ctx(|| "read the runtime options on stdin".to_string())?;
    if bytes.is_empty() {
        return Ok(Default::default());
    }
    let any = Any::parse_from_bytes(&bytes)
        .map_err(|e| Error::InvalidArgument(format!("runtime options on stdin: {e}")))?;
    options::from_any(Some(&any))
}

fn delete(flags: &Flags, bundle: &Path) -> Result<()> {
    let opts = options::load(bundle);
    let runtime = Runtime::new(&opts.binary_name, &opts.root, &flags.namespace, bundle)
        .with_systemd_cgroup(opts.systemd_cgroup);
    if let Err(e) = runtime.run(&["delete", "--force", flags.id.as_str()]) {
        log::warn!("delete {}: {e}", flags.id);
    }
    unmount_rootfs(&bundle.join("rootfs"))?;
    remove_dead_socket(bundle);
    let resp = DeleteResponse {
        pid: 0,
        exit_status: 128 + libc::SIGKILL as u32,
        exited_at: Some(Timestamp::now()).into(),
        ..Default::default()
    };
    let bytes = resp
        .write_to_bytes()
        .map_err(|e| Error::Other(format!("encode delete response: {e}")))?;
    let mut out = std::io::stdout().lock();
    out.write_all(&bytes)
        .and_then(|()| out.flush())
        .ctx(|| "write the delete response".to_string())
}

/// After a shim died (SIGKILL leaves no chance to clean up): removes its socket from
/// containerd's socket directory, named by the `address` file `start` wrote in the bundle,
/// unless a shim still answers there (another container of the same pod may be served by a
/// live one).
fn remove_dead_socket(bundle: &Path) {
    let Ok(address) = std::fs::read_to_string(bundle.join("address")) else {
        return;
    };
    let path = Path::new(socket_path(address.trim()));
    let is_socket = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket());
    if is_socket && UnixStream::connect(path).is_err() {
        if let Err(e) = std::fs::remove_file(path) {
            log::warn!("remove the dead shim's socket {}: {e}", path.display());
        }
    }
}

fn socket_path(address: &str) -> &str {
    address.strip_prefix("unix://").unwrap_or(address)
}

/// Binds the shim socket. `None`: a live shim of the same group already
/// serves it (we recorded its address and have nothing to do).
fn listen(address: &str) -> Result<Option<UnixListener>> {
    let path = Path::new(socket_path(address));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).ctx(|| format!("create {}", dir.display()))?;
    }
    match UnixListener::bind(path) {
        Ok(l) => Ok(Some(l)),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            if UnixStream::connect(path).is_ok() {
                write_address(address).map_err(Error::from_shim)?;
                return Ok(None);
            }
            if std::fs::metadata(path)
                .map(|m| m.file_type().is_socket())
                .unwrap_or(false)
            {
                std::fs::remove_file(path).ctx(|| format!("remove stale {}", path.display()))?;
            }
            UnixListener::bind(path)
                .map(Some)
                .ctx(|| format!("bind {}", path.display()))
        }
        Err(e) => Err(Error::io(format!("bind {}", path.display()), e)),
    }
}

/// The Task service under both of its names (v2: containerd 1.x, v3: 2.x).
fn task_methods(service: Service) -> HashMap<String, Box<dyn MethodHandler + Send + Sync>> {
    let service = Arc::new(service);
    let mut methods = create_task(service.clone());
    for (name, handler) in create_task(service) {
        methods.insert(
            name.replace("/containerd.task.v3.", "/containerd.task.v2."),
            handler,
        );
    }
    methods
}

fn serve(flags: &Flags) -> Result<()> {
    if flags.socket.is_empty() {
        return Err(Error::InvalidArgument("-socket is required".into()));
    }
    // A shim lives as long as its containers, one per pod: its idle memory
    // counts per node. One malloc arena for all threads (glibc makes one per
    // thread otherwise, each with its own resident pages); the threads here
    // mostly block on fds and handle one request at a time.
    // SAFETY: mallopt with integer arguments, before any other thread exists.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
    // Logs go to the "log" FIFO containerd made in the bundle.
    let _ = containerd_shim::logger::init(flags.debug, "info", &flags.namespace, &flags.id);
    let ttrpc_address = std::env::var("TTRPC_ADDRESS")
        .map_err(|_| Error::InvalidArgument("TTRPC_ADDRESS is not set".into()))?;
    let events = crate::publisher::start(&ttrpc_address, &flags.namespace)?;
    let exit = Arc::new(ExitSignal::default());
    let service = Service::new(&flags.namespace, events, exit.clone());
    let Some(listener) = listen(&flags.socket)? else {
        server_started();
        return Ok(());
    };
    // Two idle request workers per connection (ttrpc's default is three; it
    // wants min < default < max); ttrpc starts another whenever fewer than
    // one is idle, e.g. while a Wait blocks.
    let mut server = Server::new()
        .set_thread_count_min(1)
        .set_thread_count_default(2)
        .set_thread_count_max(3)
        .add_listener(listener.into_raw_fd())
        .map_err(|e| Error::Other(format!("ttrpc listener: {e}")))?
        .register_service(task_methods(service));
    server
        .start()
        .map_err(|e| Error::Other(format!("ttrpc server: {e}")))?;
    server_started();
    log::info!("shim serving {}", flags.socket);
    exit.wait();
    server.shutdown();
    let _ = std::fs::remove_file(socket_path(&flags.socket));
    Ok(())
}

/// Ends the `start` subcommand's wait: it copies our stdout until EOF.
fn server_started() {
    // SAFETY: dup2 of two descriptors this process has open.
    unsafe { libc::dup2(libc::STDERR_FILENO, libc::STDOUT_FILENO) };
}
