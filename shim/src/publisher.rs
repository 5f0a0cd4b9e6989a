//! Task events to containerd, in order, through one thread.
//!
//! containerd may restart while the shim runs: the connection to its
//! ttrpc socket then fails, and the thread dials again and resends, a few
//! times with a growing pause (as containerd's own shims requeue an event
//! five times) before it drops that event. Each forward has a deadline, so
//! a containerd that hangs does not stop the queue forever.

use std::sync::mpsc::{channel, Sender};
use std::time::Duration;

use containerd_shim::publisher::RemotePublisher;
use containerd_shim_protos::protobuf::MessageDyn;
use containerd_shim_protos::ttrpc::context;

use crate::error::{Error, IoContext, Result};

/// A topic (`/tasks/exit`) and its event.
pub type Event = (&'static str, Box<dyn MessageDyn>);

/// Tries per event: the first retry dials at once, later ones after 1 s,
/// 2 s, 3 s.
const ATTEMPTS: u32 = 5;
const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);

/// Starts the publishing thread for containerd's ttrpc `address`;
/// returns its queue.
pub fn start(address: &str, namespace: &str) -> Result<Sender<Event>> {
    let first = RemotePublisher::new(address).map_err(Error::from_shim)?;
    let (tx, rx) = channel::<Event>();
    let (address, ns) = (address.to_string(), namespace.to_string());
    std::thread::Builder::new()
        .name("events".into())
        .spawn(move || {
            let mut publisher = Some(first);
            for (topic, event) in rx {
                publish(&address, &ns, &mut publisher, topic, &*event);
            }
        })
        .ctx(|| "spawn the events thread".to_string())?;
    Ok(tx)
}

fn publish(
    address: &str,
    ns: &str,
    publisher: &mut Option<RemotePublisher>,
    topic: &str,
    event: &dyn MessageDyn,
) {
    for attempt in 0..ATTEMPTS {
        if attempt > 1 {
            std::thread::sleep(Duration::from_secs(u64::from(attempt - 1)));
        }
        if publisher.is_none() {
            match RemotePublisher::new(address) {
                Ok(p) => *publisher = Some(p),
                Err(e) => {
                    log::warn!("publish {topic}: connect {address}: {e}");
                    continue;
                }
            }
        }
        let Some(p) = publisher.as_ref() else {
            continue;
        };
        let ctx = context::with_timeout(FORWARD_TIMEOUT.as_nanos() as i64);
        match p.publish(ctx, topic, ns, event.clone_box()) {
            Ok(()) => return,
            Err(e) => {
                log::warn!("publish {topic}: {e}; reconnecting");
                *publisher = None;
            }
        }
    }
    log::error!("publish {topic}: containerd is unreachable: event dropped");
}
