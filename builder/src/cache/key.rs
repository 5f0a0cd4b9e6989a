//! Cache keys as pure functions: what a step reads in, its key out.
//!
//! A step's key is the sha256 of its parent's key (a base image's key is its config digest and
//! the stage's platform, `FROM scratch`'s the platform, so the platform is part of every key; a
//! stage built on another stage continues that stage's chain), the instruction as parsed, with
//! every flag (its `Debug` form, so flags the parser learns later are part of the key without
//! a change here), the stage's run config (ENV, USER, WORKDIR, SHELL...) and build args in
//! scope, which together fix what the instruction expands to; SOURCE_DATE_EPOCH; for RUN the build's network; and what the step reads besides the stage
//! ([`Step::inputs`], built with the functions here: the digest of COPY sources
//! ([`super::sources::digest`]), of the directories RUN bind-mounts, the key of a `--from`
//! stage or image).
//!
//! The bytes hashed are an on-disk format: every store's and every exported cache's entries
//! are named by them, so a change here makes every existing cache miss. The tests pin values.

use crate::dockerfile::Instr;
use crate::image::config::RunConfig;
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::fmt::Debug;

/// A cache key under construction: labelled, length-prefixed parts, so two different lists of
/// parts never hash alike.
pub struct Key(Sha256);

impl Key {
    /// A key whose parent is `parent` (empty for the first step of a chain).
    pub fn new(parent: &str) -> Key {
        Key(Sha256::new()).add("parent", parent.as_bytes())
    }

    pub fn add(mut self, label: &str, data: impl AsRef<[u8]>) -> Key {
        let data = data.as_ref();
        self.0.update((label.len() as u64).to_le_bytes());
        self.0.update(label.as_bytes());
        self.0.update((data.len() as u64).to_le_bytes());
        self.0.update(data);
        self
    }

    /// `sha256:HEX`.
    pub fn finish(self) -> String {
        format!("sha256:{}", hex::encode(self.0.finalize()))
    }
}

/// The key of a stage `FROM scratch` for `platform` (`linux/arm64`) before its first step.
pub fn scratch(platform: &str) -> String {
    Key::new("")
        .add("from", "scratch")
        .add("platform", platform)
        .finish()
}

/// The key of a stage on a base image for `platform` before its first step: from its config
/// digest, the image id, which fixes its files by their diffIDs and its settings (not the
/// manifest's: the same image stored with plain layers and pushed with gzip ones has two
/// manifests, and a store that pulled the pushed one must find the other's cache). A base
/// serves one platform; an image of another architecture may be used FROM a stage of this
/// one, and steps on it run for this one.
pub fn base_image(config_digest: &str, platform: &str) -> String {
    Key::new("")
        .add("from", config_digest)
        .add("platform", platform)
        .finish()
}

/// Everything a step's key depends on.
pub struct Step<'a> {
    /// The key of the step before (or of the base).
    pub parent: &'a str,
    pub instr: &'a Instr,
    /// The stage's run config when the key is taken (after a metadata step is applied, before
    /// a layer step runs).
    pub config: &'a RunConfig,
    /// The stage's build args in scope.
    pub args: &'a BTreeMap<String, String>,
    /// What the step reads besides the stage (see the module doc); empty for metadata steps.
    pub inputs: &'a str,
    /// SOURCE_DATE_EPOCH: it clamps layer mtimes and sets history times.
    pub epoch: Option<i64>,
    /// The build's `--network` (its `Debug` form is hashed); part of a RUN's key only.
    pub network: &'a dyn Debug,
}

/// The key of a step.
pub fn step(s: &Step) -> String {
    let mut k = Key::new(s.parent)
        .add("instr", format!("{:?}", s.instr))
        .add(
            "config",
            serde_json::to_vec(s.config).expect("a config serializes"),
        )
        .add(
            "args",
            serde_json::to_vec(s.args).expect("a map serializes"),
        )
        .add("inputs", s.inputs)
        .add("epoch", format!("{:?}", s.epoch))
        // Layers were once recorded in the build's compression. They are recorded plain now
        // and compressed at export, so the compression is no part of a key; this constant keeps
        // the keys (and entries) of gzip builds made before.
        .add("compression", "application/vnd.oci.image.layer.v1.tar+gzip");
    if matches!(s.instr, Instr::Run(_)) {
        k = k.add("network", format!("{:?}", s.network));
    }
    k.finish()
}

/// The inputs of a COPY/ADD `--from` a stage or image whose key is `from`, or a named
/// directory context ([`named_dir`]), of sources `paths`.
pub fn copy_from(from: &str, paths: &[String]) -> String {
    format!("from {from} {}", paths.join("\n"))
}

/// What stands for a named directory context in [`copy_from`]: its sources' digest.
pub fn named_dir(digest: &str) -> String {
    format!("context {digest}")
}

/// What stands for a stage in a RUN bind mount: its key.
pub fn stage(key: &str) -> String {
    format!("stage {key}")
}

/// One RUN bind mount's part of the inputs: its target and what it shows (a sources digest or
/// a [`stage`]); the parts of one RUN are joined by newlines.
pub fn bind(target: &str, shows: &str) -> String {
    format!("bind {target} {shows}")
}

/// Inputs that match no key: a step whose inputs cannot be known now (a source that cannot be
/// read, a stage not built) runs, and reports the real error. The only impure function here.
pub fn unique(why: &str) -> String {
    format!("{why} {:?}", std::time::SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dockerfile::Dockerfile;
    use crate::image::config::ImageConfig;

    #[test]
    fn keys_separate_parts() {
        let k = |parts: &[(&str, &str)]| {
            let mut k = Key::new("p");
            for (l, d) in parts {
                k = k.add(l, d);
            }
            k.finish()
        };
        assert_eq!(k(&[("a", "bc")]), k(&[("a", "bc")]));
        assert_ne!(k(&[("a", "bc")]), k(&[("a", "b"), ("", "c")]));
        assert_ne!(k(&[("a", "bc")]), k(&[("ab", "c")]));
        assert_ne!(Key::new("p").finish(), Key::new("q").finish());
    }

    /// The instructions of a one-stage Dockerfile.
    fn instrs(text: &str) -> Vec<Instr> {
        Dockerfile::parse("Dockerfile", &format!("FROM scratch\n{text}"))
            .unwrap()
            .stages
            .remove(0)
            .instrs
            .into_iter()
            .map(|l| l.instr)
            .collect()
    }

    /// Fixed inputs: a RUN after `ENV A=1` with build arg `V=1` in scope.
    struct Fixed {
        instr: Instr,
        config: RunConfig,
        args: BTreeMap<String, String>,
    }

    fn fixed(instr: &str) -> Fixed {
        let mut c = ImageConfig::scratch();
        c.set_env("A", "1");
        Fixed {
            instr: instrs(instr).remove(0),
            config: c.config,
            args: [("V".to_string(), "1".to_string())].into(),
        }
    }

    fn step_of<'a>(f: &'a Fixed, parent: &'a str, inputs: &'a str) -> Step<'a> {
        Step {
            parent,
            instr: &f.instr,
            config: &f.config,
            args: &f.args,
            inputs,
            epoch: Some(1700000000),
            network: &"Default",
        }
    }

    #[test]
    fn same_inputs_same_key() {
        let f = fixed("RUN echo $V");
        let a = step(&step_of(&f, "p", "in"));
        assert_eq!(a, step(&step_of(&fixed("RUN echo $V"), "p", "in")));
        assert!(a.starts_with("sha256:") && a.len() == 71, "{a}");
    }

    #[test]
    fn each_input_changes_the_key() {
        let f = fixed("RUN echo $V");
        let base = step(&step_of(&f, "p", "in"));
        let mut keys = vec![base.clone()];
        let mut differs = |what: &str, k: String| {
            assert!(!keys.contains(&k), "{what}: the key did not change");
            keys.push(k);
        };
        differs("parent", step(&step_of(&f, "q", "in")));
        differs(
            "instruction",
            step(&step_of(&fixed("RUN echo $A"), "p", "in")),
        );
        // The text a RUN expands to changes with the build args in scope and with ENV.
        let mut g = fixed("RUN echo $V");
        g.args.insert("V".into(), "2".into());
        differs("build arg value", step(&step_of(&g, "p", "in")));
        let mut g = fixed("RUN echo $V");
        g.args.insert("W".into(), "1".into());
        differs("build arg in scope", step(&step_of(&g, "p", "in")));
        let mut c = ImageConfig::scratch();
        c.set_env("A", "2");
        let g = Fixed {
            config: c.config,
            ..fixed("RUN echo $V")
        };
        differs("config", step(&step_of(&g, "p", "in")));
        differs("inputs", step(&step_of(&f, "p", "in2")));
        differs(
            "epoch",
            step(&Step {
                epoch: None,
                ..step_of(&f, "p", "in")
            }),
        );
        differs(
            "network",
            step(&Step {
                network: &"None",
                ..step_of(&f, "p", "in")
            }),
        );
        // The automatic platform args are build args: a stage that declares them keys by them.
        let mut g = fixed("RUN echo $V");
        g.args.insert("TARGETPLATFORM".into(), "linux/amd64".into());
        let amd = step(&step_of(&g, "p", "in"));
        g.args.insert("TARGETPLATFORM".into(), "linux/arm64".into());
        differs("platform arg", step(&step_of(&g, "p", "in")));
        differs("platform arg", amd);
        // A base image per platform has its own config digest.
        assert_ne!(
            base_image("sha256:a", "linux/amd64"),
            base_image("sha256:b", "linux/amd64")
        );
        // The platform is in every key, from the root.
        assert_ne!(scratch("linux/amd64"), scratch("linux/arm64"));
        assert_ne!(
            base_image("sha256:a", "linux/amd64"),
            base_image("sha256:a", "linux/arm64")
        );
    }

    #[test]
    fn network_keys_run_steps_only() {
        let f = fixed("ENV B=1");
        assert_eq!(
            step(&step_of(&f, "p", "")),
            step(&Step {
                network: &"None",
                ..step_of(&f, "p", "")
            })
        );
    }

    #[test]
    fn copy_sources_and_mounts_change_the_inputs() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("f"), "1").unwrap();
        let root = crate::fsroot::Root::open(d.path()).unwrap();
        let srcs = ["f".to_string()];
        let one = super::super::sources::digest(&root, None, &srcs, &Default::default()).unwrap();
        std::fs::write(d.path().join("f"), "2").unwrap();
        let two = super::super::sources::digest(&root, None, &srcs, &Default::default()).unwrap();
        assert_ne!(one, two, "COPY source content");
        let f = fixed("COPY f /");
        assert_ne!(step(&step_of(&f, "p", &one)), step(&step_of(&f, "p", &two)));
        // RUN --mount=type=bind: what the mount shows.
        let g = fixed("RUN --mount=type=bind,target=/m cat /m/f");
        assert_ne!(
            step(&step_of(&g, "p", &bind("/m", &one))),
            step(&step_of(&g, "p", &bind("/m", &two)))
        );
        assert_ne!(bind("/m", &one), bind("/n", &one), "the mount's target");
        assert_ne!(
            copy_from(&stage("k1"), &srcs),
            copy_from(&stage("k2"), &srcs),
            "the --from stage's key"
        );
    }

    /// Key values computed by the builder before keys became this module (commit 9586dd6; the
    /// roots since the platform became part of them): existing caches are named by them, so
    /// they must not drift.
    #[test]
    fn key_values_are_pinned() {
        /// As `exec::run::Network`: its `Debug` form is what is hashed.
        #[derive(Debug)]
        enum Network {
            Default,
        }
        assert_eq!(
            scratch("linux/amd64"),
            "sha256:5eba504a35f82273f1d8a395e969f603b8447c2ee2a5a2e50b06a4fb9611c5e7"
        );
        assert_eq!(
            base_image(&format!("sha256:{}", "0".repeat(64)), "linux/amd64"),
            "sha256:7333b389cdbfc32ae82a06b6104af93a7f4491fc96fb4e23a9f8b98f5063b65e"
        );
        let mut c = ImageConfig::scratch();
        c.set_env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        );
        c.set_env("A", "1");
        c.set_env("B", "2");
        let args = [("V".to_string(), "1".to_string())].into();
        let run = instrs("RUN echo $A").remove(0);
        let s = Step {
            parent: "sha256:3f3bd63354f153363522667632472cfbed5986a92641460472e48fff0dbe2ac7",
            instr: &run,
            config: &c.config,
            args: &args,
            inputs: "",
            epoch: Some(1700000000),
            network: &Network::Default,
        };
        assert_eq!(
            step(&s),
            "sha256:4c1f2db9726a41f9f333b97a64f083df9d4d68250dc390334c920b9c5e1ef02d"
        );
        let mut w = c.config.clone();
        w.working_dir = Some("/w".into());
        let workdir = instrs("WORKDIR /w").remove(0);
        let s = Step {
            parent: "sha256:8bf9349a703f5f86b3e1e421c587b6543ddbd18070bc7eb6c5c1b26ebe1004a0",
            instr: &workdir,
            config: &w,
            ..s
        };
        assert_eq!(
            step(&s),
            "sha256:28ca104805f3b6b298aa0746176d6ce8bb7e280d89b4c13f99d461b69b131066"
        );
    }
}
