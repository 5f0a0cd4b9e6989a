//! The Task service containerd calls over ttrpc: one shim serves the
//! containers of one group (a container alone, or a pod's when the spec
//! names a sandbox), each with its init and exec processes.
//!
//! Every container operation is a runtime command ([`crate::runtime`]); the
//! shim adds what the runtime cannot know: stdio, rootfs mounts from
//! containerd, exit statuses (from [`crate::reaper`]) and the task events.
//! Events go out in order through [`crate::publisher`].
//!
//! A Create that names a checkpoint (containerd's restore) runs no
//! runtime command: the container waits in the created state and its Start
//! is `RUNTIME restore --detach` of that image dir, as runc's shim does.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use containerd_shim::{ExitSignal, TtrpcContext, TtrpcResult};
use containerd_shim_protos::api::{
    CheckpointTaskRequest, CloseIORequest, ConnectRequest, ConnectResponse, CreateTaskRequest,
    CreateTaskResponse, DeleteRequest, DeleteResponse, Empty, ExecProcessRequest, KillRequest,
    PauseRequest, PidsRequest, PidsResponse, ProcessInfo, ResizePtyRequest, ResumeRequest,
    ShutdownRequest, StartRequest, StartResponse, StateRequest, StateResponse, StatsRequest,
    StatsResponse, Status, UpdateTaskRequest, WaitRequest, WaitResponse,
};
use containerd_shim_protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskIO, TaskOOM, TaskPaused,
    TaskResumed, TaskStart,
};
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::{Message, MessageDyn};
use containerd_shim_protos::shim::oci::{CheckpointOptions, Options, ProcessDetails};

use crate::error::{Error, IoContext, Result};
use crate::io::{self, ConsoleSocket, StdioPaths};
use crate::lock;
use crate::oom;
use crate::options;
use crate::process::Process;
use crate::publisher::Event;
use crate::reaper::reaper;
use crate::runtime::{ChildStdio, Runtime};

pub struct Container {
    pub id: String,
    pub bundle: PathBuf,
    pub runtime: Runtime,
    /// containerd passed rootfs mounts: the shim mounted them on
    /// `bundle/rootfs` and unmounts them on delete.
    mounted_rootfs: bool,
    /// The checkpoint image dir of a Create that restores: Start then runs
    /// `restore` from it in place of `start`.
    restore_from: Option<PathBuf>,
    pub init: Arc<Process>,
    execs: Mutex<HashMap<String, Arc<Process>>>,
    /// The runc options of its Create (NoPivotRoot, NoNewKeyring, IoUid/IoGid, CriuWorkPath).
    options: Options,
}

impl Container {
    /// IoUid and IoGid, when either is set.
    fn io_ids(&self) -> Option<(u32, u32)> {
        io_ids(&self.options)
    }
}

fn io_ids(o: &Options) -> Option<(u32, u32)> {
    (o.io_uid != 0 || o.io_gid != 0).then_some((o.io_uid, o.io_gid))
}

struct Exit {
    container: String,
    exec_id: String,
    pid: u32,
    code: i32,
}

pub struct Inner {
    namespace: String,
    containers: Mutex<HashMap<String, Arc<Container>>>,
    events: Mutex<Sender<Event>>,
    exits: Mutex<Sender<Exit>>,
    exit_signal: Arc<ExitSignal>,
    /// `None` when it could not start: containers then run without TaskOOM.
    oom: Option<oom::Monitor>,
}

#[derive(Clone)]
pub struct Service {
    inner: Arc<Inner>,
}

fn any_of(msg: &dyn MessageDyn) -> Result<Any> {
    let value = msg
        .write_to_bytes_dyn()
        .map_err(|e| Error::Other(format!("encode {}: {e}", msg.descriptor_dyn().full_name())))?;
    Ok(Any {
        type_url: msg.descriptor_dyn().full_name().to_string(),
        value,
        ..Default::default()
    })
}

impl Service {
    pub fn new(namespace: &str, events_tx: Sender<Event>, exit_signal: Arc<ExitSignal>) -> Service {
        let oom_events = Mutex::new(events_tx.clone());
        let oom = oom::Monitor::start(Box::new(move |id: &str| {
            log::info!("container {id}: out of memory");
            let event = TaskOOM {
                container_id: id.to_string(),
                ..Default::default()
            };
            let _ = lock(&oom_events).send(("/tasks/oom", Box::new(event)));
        }))
        .map_err(|e| log::error!("no OOM notifications: {e}"))
        .ok();
        let (exits_tx, exits_rx) = channel::<Exit>();
        let service = Service {
            inner: Arc::new(Inner {
                namespace: namespace.to_string(),
                containers: Mutex::new(HashMap::new()),
                events: Mutex::new(events_tx),
                exits: Mutex::new(exits_tx),
                exit_signal,
                oom,
            }),
        };
        let this = service.clone();
        let _ = std::thread::Builder::new()
            .name("exits".into())
            .spawn(move || {
                for exit in exits_rx {
                    this.on_exit(exit);
                }
            });
        service
    }

    fn publish(&self, topic: &'static str, event: Box<dyn MessageDyn>) {
        let _ = lock(&self.inner.events).send((topic, event));
    }

    fn container(&self, id: &str) -> Result<Arc<Container>> {
        lock(&self.inner.containers)
            .get(id)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("container {id}")))
    }

    fn process(&self, id: &str, exec_id: &str) -> Result<(Arc<Container>, Arc<Process>)> {
        let c = self.container(id)?;
        if exec_id.is_empty() {
            let init = c.init.clone();
            return Ok((c, init));
        }
        let p = lock(&c.execs)
            .get(exec_id)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("exec {exec_id} of container {id}")))?;
        Ok((c, p))
    }

    /// Reports `pid`'s exit to the exits thread (never blocks the reaper).
    fn watch(&self, container: &str, exec_id: &str, pid: u32) {
        let tx = lock(&self.inner.exits).clone();
        let (container, exec_id) = (container.to_string(), exec_id.to_string());
        reaper().watch(
            pid as i32,
            Box::new(move |code| {
                let _ = tx.send(Exit {
                    container,
                    exec_id,
                    pid,
                    code,
                });
            }),
        );
    }

    fn on_exit(&self, exit: Exit) {
        let Ok((_, p)) = self.process(&exit.container, &exit.exec_id) else {
            return;
        };
        let _life = p.lifecycle();
        if p.pid() != exit.pid {
            return;
        }
        let at = p.set_exited(exit.code as u32);
        let id = if exit.exec_id.is_empty() {
            exit.container.clone()
        } else {
            exit.exec_id.clone()
        };
        self.publish(
            "/tasks/exit",
            Box::new(TaskExit {
                container_id: exit.container,
                id,
                pid: exit.pid,
                exit_status: exit.code as u32,
                exited_at: Some(at).into(),
                ..Default::default()
            }),
        );
    }

    /// Starts the runtime command that makes `p` (`create` or `exec`),
    /// wiring its stdio; returns the pid from the pid file.
    fn spawn_process(
        &self,
        c_runtime: &Runtime,
        p: &Process,
        mut args: Vec<String>,
        pid_file: &Path,
        io_ids: Option<(u32, u32)>,
    ) -> Result<u32> {
        let _ = std::fs::remove_file(pid_file);
        let id = args.pop().expect("the container id is the last argument");
        let owner = io::Owner {
            id: &id,
            namespace: &self.inner.namespace,
        };
        args.push("--pid-file".into());
        args.push(pid_file.display().to_string());
        if p.stdio.terminal {
            let socket = ConsoleSocket::new()?;
            args.push("--console-socket".into());
            args.push(socket.path().display().to_string());
            args.push(id.clone());
            c_runtime.run_with_stdio(&args, ChildStdio::null())?;
            let master = socket.receive()?;
            p.set_io(io::console(&p.stdio, owner, master)?);
        } else {
            let (pio, child) = io::pipes(&p.stdio, owner, io_ids)?;
            args.push(id.clone());
            c_runtime.run_with_stdio(&args, child)?;
            p.set_io(pio);
        }
        let text =
            std::fs::read_to_string(pid_file).ctx(|| format!("read {}", pid_file.display()))?;
        text.trim()
            .parse::<u32>()
            .map_err(|_| Error::Other(format!("{}: not a pid: {text:?}", pid_file.display())))
    }

    fn do_create(&self, req: &CreateTaskRequest) -> Result<u32> {
        if lock(&self.inner.containers).contains_key(&req.id) {
            return Err(Error::AlreadyExists(format!("container {}", req.id)));
        }
        let bundle = PathBuf::from(&req.bundle);
        let opts = options::from_any(req.options.as_ref())?;
        options::save(&bundle, &opts)?;
        let runtime = Runtime::new(
            &opts.binary_name,
            &opts.root,
            &self.inner.namespace,
            &bundle,
        )
        .with_systemd_cgroup(opts.systemd_cgroup)
        .with_criu(&options::criu_path(&opts));
        let rootfs = bundle.join("rootfs");
        let mounted_rootfs = !req.rootfs.is_empty();
        if mounted_rootfs {
            std::fs::create_dir_all(&rootfs).ctx(|| format!("create {}", rootfs.display()))?;
            for m in &req.rootfs {
                if let Err(e) = crate::mount::mount_one(&m.type_, &m.source, &m.options, &rootfs) {
                    let _ = unmount_rootfs(&rootfs);
                    return Err(e);
                }
            }
        }
        let init = Arc::new(Process::new(
            "",
            StdioPaths {
                stdin: req.stdin.clone(),
                stdout: req.stdout.clone(),
                stderr: req.stderr.clone(),
                terminal: req.terminal,
            },
            Vec::new(),
        ));
        let restore_from = (!req.checkpoint.is_empty()).then(|| PathBuf::from(&req.checkpoint));
        if !req.parent_checkpoint.is_empty() {
            // criu follows the image dir's own link to its parent images.
            log::info!(
                "container {}: parent checkpoint {} is reached through {}",
                req.id,
                req.parent_checkpoint,
                req.checkpoint
            );
        }
        let pid = if restore_from.is_some() {
            0
        } else {
            let mut args = vec![
                "create".to_string(),
                "--bundle".to_string(),
                req.bundle.clone(),
            ];
            if opts.no_pivot_root {
                args.push("--no-pivot".into());
            }
            if opts.no_new_keyring {
                args.push("--no-new-keyring".into());
            }
            args.push(req.id.clone());
            let pid_file = bundle.join("init.pid");
            match self.spawn_process(&runtime, &init, args, &pid_file, io_ids(&opts)) {
                Ok(pid) => pid,
                Err(e) => {
                    let _ = runtime.run(&["delete", "--force", req.id.as_str()]);
                    if mounted_rootfs {
                        let _ = unmount_rootfs(&rootfs);
                    }
                    return Err(e);
                }
            }
        };
        init.set_pid(pid);
        let container = Arc::new(Container {
            id: req.id.clone(),
            bundle,
            runtime,
            mounted_rootfs,
            restore_from,
            init,
            execs: Mutex::new(HashMap::new()),
            options: opts,
        });
        lock(&self.inner.containers).insert(req.id.clone(), container);
        if pid != 0 {
            self.watch_init(&req.id, pid);
        }
        self.publish(
            "/tasks/create",
            Box::new(TaskCreate {
                container_id: req.id.clone(),
                bundle: req.bundle.clone(),
                rootfs: req.rootfs.clone(),
                io: Some(TaskIO {
                    stdin: req.stdin.clone(),
                    stdout: req.stdout.clone(),
                    stderr: req.stderr.clone(),
                    terminal: req.terminal,
                    ..Default::default()
                })
                .into(),
                checkpoint: req.checkpoint.clone(),
                pid,
                ..Default::default()
            }),
        );
        Ok(pid)
    }

    fn do_start(&self, req: &StartRequest) -> Result<u32> {
        let (c, p) = self.process(&req.id, &req.exec_id)?;
        let _life = p.lifecycle();
        if p.state().status != Status::CREATED {
            return Err(Error::Precondition(format!(
                "{}: cannot start a process that is not created",
                display_id(&req.id, &req.exec_id)
            )));
        }
        if req.exec_id.is_empty() {
            match &c.restore_from {
                Some(images) => self.restore(&c, images)?,
                None => {
                    c.runtime.run(&["start", c.id.as_str()])?;
                }
            }
            p.set_status(Status::RUNNING);
            let pid = p.pid();
            self.publish(
                "/tasks/start",
                Box::new(TaskStart {
                    container_id: c.id.clone(),
                    pid,
                    ..Default::default()
                }),
            );
            return Ok(pid);
        }
        // An exec added while the init ran cannot start once the init has exited:
        // FailedPrecondition, as containerd-shim-runc-v2 answers (not the runtime's
        // "container not running", which reached containerd as Unknown).
        if c.init.state().status == Status::STOPPED {
            return Err(Error::Precondition(format!(
                "container {} init process is not running",
                c.id
            )));
        }
        let spec_file = c.bundle.join(format!("exec-{}-process.json", req.exec_id));
        std::fs::write(&spec_file, &p.spec).ctx(|| format!("write {}", spec_file.display()))?;
        let args = vec![
            "exec".to_string(),
            "--detach".to_string(),
            "--process".to_string(),
            spec_file.display().to_string(),
            c.id.clone(),
        ];
        let pid_file = c.bundle.join(format!("exec-{}.pid", req.exec_id));
        let started = self.spawn_process(&c.runtime, &p, args, &pid_file, c.io_ids());
        let _ = std::fs::remove_file(&spec_file);
        let _ = std::fs::remove_file(&pid_file);
        let pid = started?;
        p.set_pid(pid);
        p.set_status(Status::RUNNING);
        self.watch(&c.id, &req.exec_id, pid);
        self.publish(
            "/tasks/exec-started",
            Box::new(TaskExecStarted {
                container_id: c.id.clone(),
                exec_id: req.exec_id.clone(),
                pid,
                ..Default::default()
            }),
        );
        Ok(pid)
    }

    /// Watches the init's exit and its OOM events.
    fn watch_init(&self, id: &str, pid: u32) {
        self.watch(id, "", pid);
        if let Some(oom) = &self.inner.oom {
            if let Err(e) = oom.add(id, pid) {
                log::warn!("container {id}: no OOM notifications: {e}");
            }
        }
    }

    /// Start of a container created from a checkpoint: `RUNTIME restore
    /// --detach` of `images` with the init's stdio, then the restored init
    /// is watched as a created one would be.
    fn restore(&self, c: &Container, images: &Path) -> Result<()> {
        // The runc options' CriuWorkPath, kept; else one of ours, removed after a restore.
        let own_work = c.options.criu_work_path.is_empty();
        let work = match own_work {
            true => c.bundle.join("criu-work"),
            false => PathBuf::from(&c.options.criu_work_path),
        };
        let mut args = vec![
            "restore".to_string(),
            "--detach".into(),
            "--image-path".into(),
            images.display().to_string(),
            "--work-path".into(),
            work.display().to_string(),
            "--bundle".into(),
            c.bundle.display().to_string(),
        ];
        if c.options.no_pivot_root {
            args.push("--no-pivot".into());
        }
        args.push(c.id.clone());
        let pid_file = c.bundle.join("init.pid");
        let restored = self.spawn_process(&c.runtime, &c.init, args, &pid_file, c.io_ids());
        if restored.is_ok() && own_work {
            let _ = std::fs::remove_dir_all(&work);
        }
        let pid = restored?;
        c.init.set_pid(pid);
        self.watch_init(&c.id, pid);
        Ok(())
    }

    fn do_delete(&self, req: &DeleteRequest) -> Result<DeleteResponse> {
        let (c, p) = self.process(&req.id, &req.exec_id)?;
        let st = p.state();
        if matches!(st.status, Status::RUNNING | Status::PAUSED) {
            return Err(Error::Precondition(format!(
                "{}: cannot delete a running process",
                display_id(&req.id, &req.exec_id)
            )));
        }
        // The client reads the rest of the output after Delete: let it
        // reach the FIFOs first (as runc's shim, for at most 2 s).
        p.with_io(|io| {
            io.wait_output(Duration::from_secs(2));
            io.stop_logger();
        });
        if req.exec_id.is_empty() {
            if let Err(e) = c.runtime.run(&["delete", "--force", c.id.as_str()]) {
                let msg = e.to_string();
                if !msg.contains("does not exist") && !msg.contains("not exist") {
                    return Err(e);
                }
            }
            if let Some(oom) = &self.inner.oom {
                oom.remove(&c.id);
            }
            if c.mounted_rootfs {
                unmount_rootfs(&c.bundle.join("rootfs"))?;
            }
            lock(&self.inner.containers).remove(&c.id);
            self.publish(
                "/tasks/delete",
                Box::new(TaskDelete {
                    container_id: c.id.clone(),
                    pid: st.pid,
                    exit_status: st.exit_status,
                    exited_at: st.exited_at.clone().into(),
                    ..Default::default()
                }),
            );
        } else {
            lock(&c.execs).remove(&req.exec_id);
        }
        Ok(DeleteResponse {
            pid: st.pid,
            exit_status: st.exit_status,
            exited_at: st.exited_at.into(),
            ..Default::default()
        })
    }

    fn do_exec(&self, req: &ExecProcessRequest) -> Result<()> {
        let c = self.container(&req.id)?;
        if c.init.state().status == Status::STOPPED {
            return Err(Error::Precondition(format!(
                "container {} is stopped",
                req.id
            )));
        }
        let spec = req
            .spec
            .as_ref()
            .map(|a| a.value.clone())
            .ok_or_else(|| Error::InvalidArgument("exec without a process spec".into()))?;
        let mut execs = lock(&c.execs);
        if execs.contains_key(&req.exec_id) {
            return Err(Error::AlreadyExists(format!(
                "exec {} of container {}",
                req.exec_id, req.id
            )));
        }
        let stdio = StdioPaths {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        };
        execs.insert(
            req.exec_id.clone(),
            Arc::new(Process::new(&req.exec_id, stdio, spec)),
        );
        drop(execs);
        self.publish(
            "/tasks/exec-added",
            Box::new(TaskExecAdded {
                container_id: req.id.clone(),
                exec_id: req.exec_id.clone(),
                ..Default::default()
            }),
        );
        Ok(())
    }

    fn do_kill(&self, req: &KillRequest) -> Result<()> {
        let (c, p) = self.process(&req.id, &req.exec_id)?;
        let st = p.state();
        if req.exec_id.is_empty() {
            if st.status == Status::STOPPED && !req.all {
                return Err(Error::NotFound(format!(
                    "container {}: process already finished",
                    req.id
                )));
            }
            let sig = req.signal.to_string();
            let mut args = vec!["kill"];
            if req.all {
                args.push("--all");
            }
            args.push(&c.id);
            args.push(&sig);
            c.runtime.run(&args).map_err(crate::error::kill_error)?;
            return Ok(());
        }
        if st.status == Status::CREATED || st.pid == 0 {
            return Err(Error::Precondition(format!(
                "exec {} of container {}: process not created",
                req.exec_id, req.id
            )));
        }
        if st.status != Status::RUNNING && st.status != Status::PAUSED {
            return Err(Error::NotFound(format!(
                "exec {} of container {}: process already finished",
                req.exec_id, req.id
            )));
        }
        // SAFETY: kill(2) has no memory preconditions.
        if unsafe { libc::kill(st.pid as i32, req.signal as i32) } < 0 {
            return Err(crate::error::kill_error(Error::io(
                format!("kill exec {} (pid {})", req.exec_id, st.pid),
                std::io::Error::last_os_error(),
            )));
        }
        Ok(())
    }

    fn do_pids(&self, req: &PidsRequest) -> Result<PidsResponse> {
        let c = self.container(&req.id)?;
        let out = c.runtime.run(&["ps", "--format", "json", c.id.as_str()])?;
        let pids: Vec<u32> = serde_json::from_str(out.trim()).map_err(|e| {
            Error::Other(format!("{} ps: {e}: {out:?}", c.runtime.binary.display()))
        })?;
        let execs: HashMap<u32, String> = lock(&c.execs)
            .values()
            .map(|p| (p.pid(), p.exec_id.clone()))
            .collect();
        let mut resp = PidsResponse::new();
        for pid in pids {
            let mut info = ProcessInfo {
                pid,
                ..Default::default()
            };
            if let Some(exec_id) = execs.get(&pid) {
                let details = ProcessDetails {
                    exec_id: exec_id.clone(),
                    ..Default::default()
                };
                info.info = Some(any_of(&details)?).into();
            }
            resp.processes.push(info);
        }
        Ok(resp)
    }

    fn do_pause_resume(&self, id: &str, pause: bool) -> Result<()> {
        let c = self.container(id)?;
        if pause {
            c.runtime.run(&["pause", id])?;
            c.init.set_status(Status::PAUSED);
            self.publish(
                "/tasks/paused",
                Box::new(TaskPaused {
                    container_id: id.to_string(),
                    ..Default::default()
                }),
            );
        } else {
            c.runtime.run(&["resume", id])?;
            c.init.set_status(Status::RUNNING);
            self.publish(
                "/tasks/resumed",
                Box::new(TaskResumed {
                    container_id: id.to_string(),
                    ..Default::default()
                }),
            );
        }
        Ok(())
    }

    fn do_update(&self, req: &UpdateTaskRequest) -> Result<()> {
        let c = self.container(&req.id)?;
        let resources = req
            .resources
            .as_ref()
            .ok_or_else(|| Error::InvalidArgument("update without resources".into()))?;
        let file = c.bundle.join("update-resources.json");
        std::fs::write(&file, &resources.value).ctx(|| format!("write {}", file.display()))?;
        let file_arg = file.display().to_string();
        let res = c
            .runtime
            .run(&["update", "--resources", file_arg.as_str(), c.id.as_str()]);
        let _ = std::fs::remove_file(&file);
        res.map(|_| ())
    }

    /// `RUNTIME checkpoint` into the directory containerd names, with
    /// runc's shim options (`containerd.runc.v1.CheckpointOptions`).
    fn do_checkpoint(&self, req: &CheckpointTaskRequest) -> Result<()> {
        let c = self.container(&req.id)?;
        let opts = match req.options.as_ref().filter(|a| !a.value.is_empty()) {
            Some(any) => CheckpointOptions::parse_from_bytes(&any.value).map_err(|e| {
                Error::InvalidArgument(format!("checkpoint options {}: {e}", any.type_url))
            })?,
            None => CheckpointOptions::default(),
        };
        let image = if opts.image_path.is_empty() {
            req.path.clone()
        } else {
            opts.image_path.clone()
        };
        if image.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "checkpoint of container {}: no image path",
                req.id
            )));
        }
        let work = if opts.work_path.is_empty() {
            c.bundle.join("criu-work").display().to_string()
        } else {
            opts.work_path.clone()
        };
        let mut args = vec![
            "checkpoint".to_string(),
            "--image-path".into(),
            image,
            "--work-path".into(),
            work.clone(),
        ];
        let flags = [
            (!opts.exit, "--leave-running"),
            (opts.open_tcp, "--tcp-established"),
            (opts.external_unix_sockets, "--ext-unix-sk"),
            (opts.terminal, "--shell-job"),
            (opts.file_locks, "--file-locks"),
        ];
        args.extend(
            flags
                .iter()
                .filter(|(on, _)| *on)
                .map(|(_, f)| f.to_string()),
        );
        for ns in &opts.empty_namespaces {
            args.push("--empty-ns".into());
            args.push(ns.clone());
        }
        if !opts.cgroups_mode.is_empty() {
            args.push("--manage-cgroups-mode".into());
            args.push(opts.cgroups_mode.clone());
        }
        args.push(c.id.clone());
        let res = c.runtime.run(&args);
        if opts.work_path.is_empty() {
            let _ = std::fs::remove_dir_all(&work);
        }
        res.map(|_| ())
    }

    fn do_stats(&self, req: &StatsRequest) -> Result<StatsResponse> {
        let c = self.container(&req.id)?;
        if crate::stats_v2::unified() {
            // As runc's shim: the cgroup's own files, as cgroup v2 metrics.
            let dir = crate::stats_v2::cgroup_dir(c.init.pid())
                .ok_or_else(|| Error::NotFound(format!("container {}: cgroup", req.id)))?;
            return Ok(StatsResponse {
                stats: Some(any_of(&crate::stats_v2::metrics(&dir))?).into(),
                ..Default::default()
            });
        }
        let out = c.runtime.run(&["events", "--stats", c.id.as_str()])?;
        let line = out.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        let event: serde_json::Value = serde_json::from_str(line).map_err(|e| {
            Error::Other(format!(
                "{} events --stats: {e}: {out:?}",
                c.runtime.binary.display()
            ))
        })?;
        let metrics = crate::stats::metrics(&event["data"]);
        Ok(StatsResponse {
            stats: Some(any_of(&metrics)?).into(),
            ..Default::default()
        })
    }
}

fn display_id(id: &str, exec_id: &str) -> String {
    if exec_id.is_empty() {
        format!("container {id}")
    } else {
        format!("exec {exec_id} of container {id}")
    }
}

/// Unmounts everything at and below `rootfs`.
pub fn unmount_rootfs(rootfs: &Path) -> Result<()> {
    crate::mount::unmount_all(rootfs)
}

impl containerd_shim::Task for Service {
    fn create(
        &self,
        _ctx: &TtrpcContext,
        req: CreateTaskRequest,
    ) -> TtrpcResult<CreateTaskResponse> {
        let pid = self.do_create(&req)?;
        Ok(CreateTaskResponse {
            pid,
            ..Default::default()
        })
    }

    fn start(&self, _ctx: &TtrpcContext, req: StartRequest) -> TtrpcResult<StartResponse> {
        let pid = self.do_start(&req)?;
        Ok(StartResponse {
            pid,
            ..Default::default()
        })
    }

    fn state(&self, _ctx: &TtrpcContext, req: StateRequest) -> TtrpcResult<StateResponse> {
        let (c, p) = self.process(&req.id, &req.exec_id)?;
        let st = p.state();
        Ok(StateResponse {
            id: if req.exec_id.is_empty() {
                req.id.clone()
            } else {
                req.exec_id.clone()
            },
            bundle: c.bundle.display().to_string(),
            pid: st.pid,
            status: st.status.into(),
            stdin: p.stdio.stdin.clone(),
            stdout: p.stdio.stdout.clone(),
            stderr: p.stdio.stderr.clone(),
            terminal: p.stdio.terminal,
            exit_status: st.exit_status,
            exited_at: st.exited_at.into(),
            exec_id: req.exec_id.clone(),
            ..Default::default()
        })
    }

    fn delete(&self, _ctx: &TtrpcContext, req: DeleteRequest) -> TtrpcResult<DeleteResponse> {
        Ok(self.do_delete(&req)?)
    }

    fn exec(&self, _ctx: &TtrpcContext, req: ExecProcessRequest) -> TtrpcResult<Empty> {
        self.do_exec(&req)?;
        Ok(Empty::new())
    }

    fn kill(&self, _ctx: &TtrpcContext, req: KillRequest) -> TtrpcResult<Empty> {
        self.do_kill(&req)?;
        Ok(Empty::new())
    }

    fn pids(&self, _ctx: &TtrpcContext, req: PidsRequest) -> TtrpcResult<PidsResponse> {
        Ok(self.do_pids(&req)?)
    }

    fn pause(&self, _ctx: &TtrpcContext, req: PauseRequest) -> TtrpcResult<Empty> {
        self.do_pause_resume(&req.id, true)?;
        Ok(Empty::new())
    }

    fn resume(&self, _ctx: &TtrpcContext, req: ResumeRequest) -> TtrpcResult<Empty> {
        self.do_pause_resume(&req.id, false)?;
        Ok(Empty::new())
    }

    fn resize_pty(&self, _ctx: &TtrpcContext, req: ResizePtyRequest) -> TtrpcResult<Empty> {
        let (_, p) = self.process(&req.id, &req.exec_id)?;
        p.with_io(|io| io.resize(req.width, req.height))
            .unwrap_or(Ok(()))?;
        Ok(Empty::new())
    }

    fn close_io(&self, _ctx: &TtrpcContext, req: CloseIORequest) -> TtrpcResult<Empty> {
        let (_, p) = self.process(&req.id, &req.exec_id)?;
        if req.stdin {
            p.with_io(|io| io.close_stdin());
        }
        Ok(Empty::new())
    }

    fn update(&self, _ctx: &TtrpcContext, req: UpdateTaskRequest) -> TtrpcResult<Empty> {
        self.do_update(&req)?;
        Ok(Empty::new())
    }

    fn wait(&self, _ctx: &TtrpcContext, req: WaitRequest) -> TtrpcResult<WaitResponse> {
        let (_, p) = self.process(&req.id, &req.exec_id)?;
        let st = p.wait();
        Ok(WaitResponse {
            exit_status: st.exit_status,
            exited_at: st.exited_at.into(),
            ..Default::default()
        })
    }

    fn checkpoint(&self, _ctx: &TtrpcContext, req: CheckpointTaskRequest) -> TtrpcResult<Empty> {
        self.do_checkpoint(&req)?;
        Ok(Empty::new())
    }

    fn stats(&self, _ctx: &TtrpcContext, req: StatsRequest) -> TtrpcResult<StatsResponse> {
        Ok(self.do_stats(&req)?)
    }

    fn connect(&self, _ctx: &TtrpcContext, req: ConnectRequest) -> TtrpcResult<ConnectResponse> {
        let task_pid = self.container(&req.id).map(|c| c.init.pid()).unwrap_or(0);
        Ok(ConnectResponse {
            shim_pid: std::process::id(),
            task_pid,
            version: env!("CARGO_PKG_VERSION").to_string(),
            ..Default::default()
        })
    }

    fn shutdown(&self, _ctx: &TtrpcContext, req: ShutdownRequest) -> TtrpcResult<Empty> {
        if req.now || lock(&self.inner.containers).is_empty() {
            self.inner.exit_signal.signal();
        }
        Ok(Empty::new())
    }
}
