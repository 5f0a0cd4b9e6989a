//! A small blocking D-Bus client: just what the systemd cgroup driver needs.
//!
//! Owns: connecting to a bus socket (`unix:path=` addresses), the `EXTERNAL`
//! authentication, `Hello`, method calls with the few argument types systemd's
//! unit API takes, their replies and errors, and reading signals (`JobRemoved`).
//!
//! Must never: start threads, block without a timeout (every read has one), or
//! hold anything but the one socket (closed when the [`Conn`] drops).
//!
//! Why hand-written: brig is a static, size-optimised binary that lives for a
//! few milliseconds. zbus needs an async executor (tokio or its own) and pulls
//! in much more code than the wire format needs; libdbus is C and would break
//! the static musl build; `rustbus` is synchronous but general (its own type
//! system, derive macros) for the six calls used here. The subset of the wire
//! format below (little-endian messages, basic types, arrays, structs and
//! variants of those) is small and checked against a real `dbus-daemon` by the
//! tests.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long one call (or waiting for a job) may take before giving up.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// An error of the bus: transport, protocol, or an error reply.
#[derive(Debug)]
pub enum BusError {
    /// Socket trouble, or a malformed message.
    Io(String),
    /// An error reply: its D-Bus error name and message.
    Reply { name: String, message: String },
}

impl std::fmt::Display for BusError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BusError::Io(m) => f.write_str(m),
            BusError::Reply { name, message } => write!(f, "{name}: {message}"),
        }
    }
}

type Res<T> = std::result::Result<T, BusError>;

fn io(what: &str, e: std::io::Error) -> BusError {
    BusError::Io(format!("{what}: {e}"))
}

/// A value passed in a method call.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Path(String),
    Bool(bool),
    U32(u32),
    U64(u64),
    /// `au`
    U32s(Vec<u32>),
    /// `ay`
    Bytes(Vec<u8>),
    /// `a(ss)`
    StrPairs(Vec<(String, String)>),
    /// `a(sv)`: named properties, as systemd's unit API takes them.
    Props(Vec<(String, Value)>),
    /// `a(sa(sv))`: auxiliary units (always empty here).
    AuxUnits,
    /// `v`
    Variant(Box<Value>),
}

impl Value {
    fn signature(&self) -> String {
        match self {
            Value::Str(_) => "s".into(),
            Value::Path(_) => "o".into(),
            Value::Bool(_) => "b".into(),
            Value::U32(_) => "u".into(),
            Value::U64(_) => "t".into(),
            Value::U32s(_) => "au".into(),
            Value::Bytes(_) => "ay".into(),
            Value::StrPairs(_) => "a(ss)".into(),
            Value::Props(_) => "a(sv)".into(),
            Value::AuxUnits => "a(sa(sv))".into(),
            Value::Variant(_) => "v".into(),
        }
    }
}

/// Message writer: alignment is relative to the start of `buf`, which must
/// start at an 8-aligned offset in the message (the header, or the body).
#[derive(Default)]
struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    fn pad(&mut self, n: usize) {
        while !self.buf.len().is_multiple_of(n) {
            self.buf.push(0);
        }
    }
    fn u32(&mut self, v: u32) {
        self.pad(4);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    fn str(&mut self, s: &str) {
        self.u32(s.len() as u32);
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(0);
    }
    fn sig(&mut self, s: &str) {
        self.buf.push(s.len() as u8);
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(0);
    }
    /// An array whose elements have alignment `align`, written by `f`.
    fn array(&mut self, align: usize, f: impl FnOnce(&mut Writer)) {
        self.u32(0);
        let len_at = self.buf.len() - 4;
        self.pad(align);
        let start = self.buf.len();
        f(self);
        let len = (self.buf.len() - start) as u32;
        self.buf[len_at..len_at + 4].copy_from_slice(&len.to_le_bytes());
    }
    fn value(&mut self, v: &Value) {
        match v {
            Value::Str(s) | Value::Path(s) => self.str(s),
            Value::Bool(b) => self.u32(u32::from(*b)),
            Value::U32(n) => self.u32(*n),
            Value::U64(n) => {
                self.pad(8);
                self.buf.extend_from_slice(&n.to_le_bytes());
            }
            Value::U32s(v) => self.array(4, |w| v.iter().for_each(|n| w.u32(*n))),
            Value::Bytes(b) => self.array(1, |w| w.buf.extend_from_slice(b)),
            Value::StrPairs(p) => self.array(8, |w| {
                for (a, b) in p {
                    w.pad(8);
                    w.str(a);
                    w.str(b);
                }
            }),
            Value::Props(p) => self.array(8, |w| {
                for (name, v) in p {
                    w.pad(8);
                    w.str(name);
                    w.sig(&v.signature());
                    w.value(v);
                }
            }),
            Value::AuxUnits => self.array(8, |_| {}),
            Value::Variant(v) => {
                self.sig(&v.signature());
                self.value(v);
            }
        }
    }
}

/// Message reader over one message (header fields or body), alignment
/// relative to `base` (the offset of `buf[0]` in the message).
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
}

impl<'a> Reader<'a> {
    fn bad() -> BusError {
        BusError::Io("malformed D-Bus message".into())
    }
    fn align(&mut self, n: usize) -> Res<()> {
        while !(self.base + self.pos).is_multiple_of(n) {
            self.pos += 1;
        }
        if self.pos > self.buf.len() {
            return Err(Self::bad());
        }
        Ok(())
    }
    fn take(&mut self, n: usize) -> Res<&'a [u8]> {
        let s = self.buf.get(self.pos..self.pos + n).ok_or_else(Self::bad)?;
        self.pos += n;
        Ok(s)
    }
    fn u8(&mut self) -> Res<u8> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Res<u32> {
        self.align(4)?;
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn str(&mut self) -> Res<String> {
        let n = self.u32()? as usize;
        let s = self.take(n + 1)?;
        Ok(String::from_utf8_lossy(&s[..n]).into_owned())
    }
    fn sig(&mut self) -> Res<String> {
        let n = self.u8()? as usize;
        let s = self.take(n + 1)?;
        Ok(String::from_utf8_lossy(&s[..n]).into_owned())
    }
    /// A value of the basic type `t` (or a variant of one) as text: enough
    /// for header fields and the replies read here.
    fn basic(&mut self, t: u8) -> Res<String> {
        Ok(match t {
            b's' | b'o' => self.str()?,
            b'g' => self.sig()?,
            b'u' | b'b' => self.u32()?.to_string(),
            b'v' => {
                let s = self.sig()?;
                let t = *s.as_bytes().first().ok_or_else(Self::bad)?;
                if s.len() != 1 {
                    return Err(BusError::Io(format!("unexpected variant type {s:?}")));
                }
                self.basic(t)?
            }
            _ => return Err(BusError::Io(format!("unexpected D-Bus type {}", t as char))),
        })
    }
}

/// A message received.
#[derive(Debug, Default)]
pub struct Message {
    /// 2 method return, 3 error, 4 signal (1, a call, is never received here).
    pub kind: u8,
    pub reply_serial: u32,
    pub member: String,
    pub interface: String,
    pub error_name: String,
    /// The body's basic values in order, as text (`o`, `s`, `u` ... and
    /// variants of those); empty for other bodies.
    pub args: Vec<String>,
}

/// One connection to a bus.
pub struct Conn {
    sock: UnixStream,
    serial: u32,
    /// Messages read while waiting for something else.
    queued: Vec<Message>,
}

/// The socket path of a bus address (`unix:path=/run/dbus/system_bus_socket`,
/// possibly with `,guid=` and `;` alternatives).
pub fn socket_path(address: &str) -> Option<PathBuf> {
    address.split(';').find_map(|a| {
        let rest = a.strip_prefix("unix:")?;
        rest.split(',')
            .find_map(|kv| kv.strip_prefix("path="))
            .map(PathBuf::from)
    })
}

impl Conn {
    /// Connect to the bus at `path`, authenticate as `uid` and say Hello.
    pub fn connect(path: &Path, uid: u32) -> Res<Conn> {
        let sock = UnixStream::connect(path).map_err(|e| io("connect", e))?;
        sock.set_read_timeout(Some(TIMEOUT))
            .map_err(|e| io("set timeout", e))?;
        let mut c = Conn {
            sock,
            serial: 0,
            queued: Vec::new(),
        };
        c.auth(uid)?;
        c.call(
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
            "Hello",
            &[],
        )?;
        Ok(c)
    }

    fn auth(&mut self, uid: u32) -> Res<()> {
        let hex: String = uid
            .to_string()
            .bytes()
            .map(|b| format!("{b:02x}"))
            .collect();
        let hello = format!("\0AUTH EXTERNAL {hex}\r\n");
        self.sock
            .write_all(hello.as_bytes())
            .map_err(|e| io("authenticate", e))?;
        let mut line = Vec::new();
        let mut b = [0u8; 1];
        while !line.ends_with(b"\r\n") {
            let n = self.sock.read(&mut b).map_err(|e| io("authenticate", e))?;
            if n == 0 || line.len() > 4096 {
                return Err(BusError::Io(
                    "authenticate: the bus closed the connection".into(),
                ));
            }
            line.push(b[0]);
        }
        let line = String::from_utf8_lossy(&line);
        if !line.starts_with("OK ") {
            return Err(BusError::Io(format!(
                "authenticate as uid {uid}: the bus answered {:?}",
                line.trim_end()
            )));
        }
        self.sock
            .write_all(b"BEGIN\r\n")
            .map_err(|e| io("authenticate", e))
    }

    /// Call `member` and wait for its reply: an error reply is an error.
    pub fn call(
        &mut self,
        dest: &str,
        path: &str,
        iface: &str,
        member: &str,
        args: &[Value],
    ) -> Res<Message> {
        self.serial += 1;
        let serial = self.serial;
        let mut body = Writer::default();
        let mut sig = String::new();
        for a in args {
            sig.push_str(&a.signature());
            body.value(a);
        }
        let mut h = Writer::default();
        h.buf.extend_from_slice(&[b'l', 1, 0, 1]);
        h.u32(body.buf.len() as u32);
        h.u32(serial);
        let fields: [(u8, Value); 4] = [
            (1, Value::Path(path.into())),
            (2, Value::Str(iface.into())),
            (3, Value::Str(member.into())),
            (6, Value::Str(dest.into())),
        ];
        h.array(8, |w| {
            for (code, v) in &fields {
                w.pad(8);
                w.buf.push(*code);
                w.sig(&v.signature());
                w.value(v);
            }
            if !sig.is_empty() {
                w.pad(8);
                w.buf.push(8);
                w.sig("g");
                w.sig(&sig);
            }
        });
        h.pad(8);
        h.buf.extend_from_slice(&body.buf);
        self.sock
            .write_all(&h.buf)
            .map_err(|e| io(&format!("call {iface}.{member}"), e))?;
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let m = self.read(deadline)?;
            if m.kind == 2 || m.kind == 3 {
                if m.reply_serial != serial {
                    continue;
                }
                if m.kind == 3 {
                    return Err(BusError::Reply {
                        name: m.error_name,
                        message: m.args.into_iter().next().unwrap_or_default(),
                    });
                }
                return Ok(m);
            }
            self.queued.push(m);
        }
    }

    /// Wait for a signal `member` for which `want` holds (queued ones first).
    pub fn wait_signal(&mut self, member: &str, want: impl Fn(&Message) -> bool) -> Res<Message> {
        let ok = |m: &Message| m.kind == 4 && m.member == member && want(m);
        if let Some(i) = self.queued.iter().position(ok) {
            return Ok(self.queued.remove(i));
        }
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let m = self.read(deadline)?;
            if ok(&m) {
                return Ok(m);
            }
        }
    }

    fn read_exact(&mut self, buf: &mut [u8], deadline: Instant) -> Res<()> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(BusError::Io("timed out waiting for the bus".into()));
        }
        self.sock
            .set_read_timeout(Some(left))
            .map_err(|e| io("set timeout", e))?;
        self.sock
            .read_exact(buf)
            .map_err(|e| io("read from the bus", e))
    }

    fn read(&mut self, deadline: Instant) -> Res<Message> {
        let mut fixed = [0u8; 16];
        self.read_exact(&mut fixed, deadline)?;
        if fixed[0] != b'l' {
            return Err(BusError::Io(
                "big-endian D-Bus messages are not supported".into(),
            ));
        }
        let word =
            |i: usize| u32::from_le_bytes([fixed[i], fixed[i + 1], fixed[i + 2], fixed[i + 3]]);
        let body_len = word(4) as usize;
        let fields_len = word(12) as usize;
        let padded = fields_len.div_ceil(8) * 8;
        if body_len + padded > 1 << 26 {
            return Err(BusError::Io("D-Bus message too large".into()));
        }
        let mut rest = vec![0u8; padded + body_len];
        self.read_exact(&mut rest, deadline)?;
        let mut m = Message {
            kind: fixed[1],
            ..Message::default()
        };
        let mut sig = String::new();
        let mut r = Reader {
            buf: &rest[..fields_len],
            pos: 0,
            base: 16,
        };
        while r.pos < fields_len {
            r.align(8)?;
            let code = r.u8()?;
            let v = r.basic(b'v')?;
            match code {
                2 => m.interface = v,
                3 => m.member = v,
                4 => m.error_name = v,
                5 => m.reply_serial = v.parse().unwrap_or(0),
                8 => sig = v,
                _ => {}
            }
        }
        let mut r = Reader {
            buf: &rest[padded..],
            pos: 0,
            base: 0,
        };
        // Bodies of other shapes (arrays, structs) are not needed: stop at the first.
        for t in sig.bytes() {
            match t {
                b's' | b'o' | b'g' | b'u' | b'b' | b'v' => m.args.push(r.basic(t)?),
                _ => break,
            }
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address() {
        assert_eq!(
            socket_path("unix:path=/run/dbus/system_bus_socket"),
            Some("/run/dbus/system_bus_socket".into())
        );
        assert_eq!(
            socket_path("unix:abstract=/x;unix:path=/b,guid=12"),
            Some("/b".into())
        );
        assert_eq!(socket_path("tcp:host=x"), None);
    }

    #[test]
    fn props_marshal_with_alignment() {
        let mut w = Writer::default();
        w.value(&Value::Props(vec![
            ("Delegate".into(), Value::Bool(true)),
            ("MemoryMax".into(), Value::U64(7)),
        ]));
        // array length, then (8-aligned) struct: "Delegate", sig "b", bool;
        // struct: "MemoryMax", sig "t", pad, u64.
        let b = &w.buf;
        assert_eq!(&b[8..12], &8u32.to_le_bytes());
        assert_eq!(&b[12..21], b"Delegate\0");
        assert_eq!(&b[21..24], b"\x01b\0");
        assert_eq!(&b[24..28], &1u32.to_le_bytes());
        assert_eq!(&b[32..36], &9u32.to_le_bytes());
        assert_eq!(&b[46..49], b"\x01t\0");
        assert_eq!(&b[56..64], &7u64.to_le_bytes());
        assert_eq!(
            u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize,
            b.len() - 8
        );
    }

    /// Against a real dbus-daemon of the test's own: auth, Hello, a call
    /// with a reply, an error reply naming the unknown service.
    #[test]
    fn talks_to_a_real_dbus_daemon() {
        let Some(daemon) = ["/usr/bin/dbus-daemon", "/bin/dbus-daemon"]
            .into_iter()
            .find(|p| Path::new(p).exists())
        else {
            eprintln!("skip: no dbus-daemon");
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("bus");
        let conf = dir.path().join("bus.conf");
        std::fs::write(
            &conf,
            format!(
                "<busconfig><type>session</type><listen>unix:path={}</listen>\
                 <auth>EXTERNAL</auth><policy context=\"default\">\
                 <allow send_destination=\"*\" eavesdrop=\"true\"/><allow own=\"*\"/><allow receive_sender=\"*\"/>\
                 </policy></busconfig>",
                sock.display()
            ),
        )
        .unwrap();
        let mut child = std::process::Command::new(daemon)
            .arg(format!("--config-file={}", conf.display()))
            .arg("--nofork")
            .spawn()
            .unwrap();
        for _ in 0..200 {
            if sock.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let uid = nix::unistd::geteuid().as_raw();
        let result = (|| -> Res<()> {
            let mut c = Conn::connect(&sock, uid)?;
            let id = c.call(
                "org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus",
                "GetId",
                &[],
            )?;
            assert_eq!(id.args[0].len(), 32, "{id:?}");
            let has = c.call(
                "org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus",
                "NameHasOwner",
                &[Value::Str("org.freedesktop.DBus".into())],
            )?;
            assert_eq!(has.args, vec!["1".to_string()]);
            let e = c
                .call(
                    "org.freedesktop.systemd1",
                    "/org/freedesktop/systemd1",
                    "org.freedesktop.systemd1.Manager",
                    "StartTransientUnit",
                    &[
                        Value::Str("x.scope".into()),
                        Value::Str("fail".into()),
                        Value::Props(vec![("PIDs".into(), Value::U32s(vec![1]))]),
                        Value::AuxUnits,
                    ],
                )
                .unwrap_err();
            assert!(
                matches!(&e, BusError::Reply { name, .. } if name == "org.freedesktop.DBus.Error.ServiceUnknown"),
                "{e}"
            );
            Ok(())
        })();
        let _ = child.kill();
        let _ = child.wait();
        result.unwrap();
    }
}
