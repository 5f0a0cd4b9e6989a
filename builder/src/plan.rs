//! The build plan, before anything runs: the global ARG values, the target stage (`--target`,
//! else the last), and the stages it needs as a graph (FROM another stage, `COPY --from`,
//! `RUN --mount=from=`), each with the stages it reads directly. Stages that do not read each
//! other can run at the same time; the graph is for one platform, the build's (`--platform`; a
//! build for several platforms is one build, and one plan, a platform).
//!
//! Pure: reads the parsed Dockerfile and the options, touches no file, resolves no image (a
//! `--from` that names no stage is left to the build). Errors name the Dockerfile line.

use crate::dockerfile::{expand, CopyArgs, DfError, Dockerfile, Instr};
use crate::image::platform::Platform;
use crate::source;
use std::collections::BTreeMap;

/// A plan that cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Dockerfile(#[from] DfError),
    #[error("target stage {0:?} not found")]
    NoTarget(String),
}

/// What the build will do, stage by stage.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Global ARG values (defaults overridden by `--build-arg`), over BuildKit's automatic
    /// platform ARGs.
    pub globals: BTreeMap<String, String>,
    /// The index of the stage whose image is the result.
    pub target: usize,
    /// The stages the target needs (itself included), each with the stages it needs directly,
    /// all before it in the Dockerfile.
    pub needs: BTreeMap<usize, Vec<usize>>,
}

/// The options a plan depends on.
pub struct Request<'a, C> {
    pub build_args: &'a BTreeMap<String, String>,
    /// `--target`.
    pub target: Option<&'a str>,
    /// `--platform`.
    pub platform: &'a Platform,
    /// `--build-context` names (lower-cased): a `COPY --from` may name one.
    pub contexts: &'a BTreeMap<String, C>,
}

/// Plans the build of `df`.
pub fn plan<C>(df: &Dockerfile, req: &Request<C>) -> Result<Plan, PlanError> {
    let globals = global_args(df, req)?;
    let (target, needs) = needed(df, req, &globals)?;
    Ok(Plan {
        globals,
        target,
        needs,
    })
}

fn err(df: &Dockerfile, line: usize, msg: impl std::fmt::Display) -> DfError {
    DfError::new(&df.file, line, msg.to_string())
}

fn global_args<C>(df: &Dockerfile, req: &Request<C>) -> Result<BTreeMap<String, String>, DfError> {
    let mut m = Platform::automatic_args(req.platform);
    for (line, k, v) in &df.global_args {
        let val = match req.build_args.get(k) {
            Some(v) => Some(v.clone()),
            None => match v {
                Some(v) => {
                    let look = |n: &str| m.get(n).cloned();
                    Some(expand::word(v, &look, df.escape).map_err(|e| err(df, *line, e))?)
                }
                None => None,
            },
        };
        if let Some(v) = val {
            m.insert(k.clone(), v);
        }
    }
    Ok(m)
}

/// The `from=` of a mount spec as written (the stages a build needs are found before any
/// expansion of the spec as a whole).
fn mount_from(spec: &str) -> Option<&str> {
    spec.split(',').find_map(|p| p.trim().strip_prefix("from="))
}

/// The target and the stages it needs, each with the stages it needs directly.
fn needed<C>(
    df: &Dockerfile,
    req: &Request<C>,
    globals: &BTreeMap<String, String>,
) -> Result<(usize, BTreeMap<usize, Vec<usize>>), PlanError> {
    let target = match req.target {
        Some(t) => {
            df.stage(t)
                .ok_or_else(|| PlanError::NoTarget(t.to_string()))?
                .index
        }
        None => df.stages.len() - 1,
    };
    let look = |n: &str| globals.get(n).cloned();
    let mut need: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    let mut todo = vec![target];
    while let Some(i) = todo.pop() {
        if need.contains_key(&i) {
            continue;
        }
        let mut deps = Vec::new();
        let st = &df.stages[i];
        let base = expand::word(&st.base, &look, df.escape).map_err(|e| err(df, st.line, e))?;
        if let Some(dep) = df.stage(&base) {
            if dep.index >= i {
                return Err(err(
                    df,
                    st.line,
                    format!("FROM {base}: stage is not defined before this one"),
                )
                .into());
            }
            deps.push(dep.index);
        }
        for l in &st.instrs {
            if let Instr::Run(r) = &l.instr {
                for f in r.mounts.iter().filter_map(|m| mount_from(m)) {
                    let f = expand::word(f, &look, df.escape).map_err(|e| err(df, l.line, e))?;
                    if let Some(dep) = df.stage(&f).filter(|d| d.index < i) {
                        deps.push(dep.index);
                    }
                }
            }
            if let Instr::Copy(CopyArgs { from: Some(f), .. }) = &l.instr {
                let f = expand::word(f, &look, df.escape).map_err(|e| err(df, l.line, e))?;
                match df.stage(&f) {
                    Some(dep) if dep.index < i => deps.push(dep.index),
                    Some(_) => {
                        return Err(err(
                            df,
                            l.line,
                            format!("COPY --from={f}: stage is not defined before this one"),
                        )
                        .into())
                    }
                    None if req.contexts.contains_key(&f.to_ascii_lowercase()) => {}
                    None if source::is_transport(&f) || f.contains(':') || f.contains('/') => {}
                    None => {
                        return Err(err(
                            df,
                            l.line,
                            format!(
                                "COPY --from={f}: no stage named {f:?} (and it is not an image \
                                 reference)"
                            ),
                        )
                        .into())
                    }
                }
            }
        }
        todo.extend(&deps);
        need.insert(i, deps);
    }
    Ok((target, need))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_of(text: &str, target: Option<&str>, args: &[(&str, &str)]) -> Result<Plan, String> {
        let df = Dockerfile::parse("Dockerfile", text).map_err(|e| e.to_string())?;
        let build_args = args
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let contexts: BTreeMap<String, ()> = [("ctx".to_string(), ())].into();
        plan(
            &df,
            &Request {
                build_args: &build_args,
                target,
                platform: &Platform::host(),
                contexts: &contexts,
            },
        )
        .map_err(|e| e.to_string())
    }

    const MULTI: &str = "FROM scratch AS a\nFROM scratch AS b\nCOPY --from=a / /\n\
                         FROM scratch AS unused\nFROM b AS c\nRUN --mount=from=a,target=/m x\n\
                         COPY --from=ctx / /\n";

    #[test]
    fn the_target_needs_only_what_it_reads() {
        let p = plan_of(MULTI, None, &[]).unwrap();
        assert_eq!(p.target, 3);
        let want: BTreeMap<usize, Vec<usize>> = [(0, vec![]), (1, vec![0]), (3, vec![1, 0])].into();
        assert_eq!(p.needs, want, "stage 2 is not needed");
        let p = plan_of(MULTI, Some("b"), &[]).unwrap();
        assert_eq!(p.target, 1);
        assert_eq!(p.needs.keys().copied().collect::<Vec<_>>(), [0, 1]);
        assert_eq!(plan_of(MULTI, Some("0"), &[]).unwrap().target, 0);
        assert_eq!(
            plan_of(MULTI, Some("nope"), &[]).unwrap_err(),
            "target stage \"nope\" not found"
        );
    }

    #[test]
    fn global_args_expand_and_name_stages() {
        let text = "ARG BASE=a\nARG N=${TARGETARCH}\nFROM scratch AS a\nFROM ${BASE}\n";
        let p = plan_of(text, None, &[]).unwrap();
        assert_eq!(p.needs[&1], vec![0]);
        assert_eq!(p.globals["N"], Platform::host().arch);
        let p = plan_of(text, None, &[("BASE", "scratch")]).unwrap();
        assert_eq!(p.needs[&1], Vec::<usize>::new());
        assert_eq!(p.globals["BASE"], "scratch");
    }

    #[test]
    fn later_stages_and_unknown_names_are_refused() {
        let e = plan_of(
            "FROM scratch AS a\nCOPY --from=b / /\nFROM scratch AS b\n",
            Some("a"),
            &[],
        )
        .unwrap_err();
        assert!(
            e.contains("Dockerfile:2") && e.contains("not defined before"),
            "{e}"
        );
        let e = plan_of("FROM scratch\nCOPY --from=nothing / /\n", None, &[]).unwrap_err();
        assert!(e.contains("no stage named \"nothing\""), "{e}");
        assert!(plan_of("FROM scratch\nCOPY --from=host/img:1 / /\n", None, &[]).is_ok());
        assert!(plan_of("FROM scratch\nCOPY --from=CTX / /\n", None, &[]).is_ok());
    }
}
