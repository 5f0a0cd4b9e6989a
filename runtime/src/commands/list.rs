//! `brig list`: the containers under the state root, as a table, JSON or ids.

use std::path::Path;

use brig::state::Root;
use brig::{Error, Result};

#[derive(clap::Args)]
pub struct ListArgs {
    #[arg(short, long, default_value = "table")]
    format: String,
    /// Print only ids.
    #[arg(short, long)]
    quiet: bool,
}

#[inline(never)]
pub fn run(root: &Root, a: &ListArgs) -> Result<()> {
    let mut rows = Vec::new();
    for id in root.list()? {
        let Ok(saved) = root.load(&id) else { continue };
        let status = saved.status(root);
        let mut v = saved.to_oci(status);
        v["owner"] = owner_of(&root.container_dir(&id)).into();
        rows.push(v);
    }
    if a.quiet {
        for r in &rows {
            println!("{}", r["id"].as_str().unwrap_or_default());
        }
        return Ok(());
    }
    match a.format.as_str() {
        "json" => {
            let out = if rows.is_empty() {
                serde_json::Value::Null
            } else {
                serde_json::Value::Array(rows)
            };
            println!("{out}");
        }
        "table" => {
            let header = ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"];
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    ["id", "pid", "status", "bundle", "created", "owner"]
                        .iter()
                        .map(|k| match &r[*k] {
                            serde_json::Value::String(s) => s.clone(),
                            v => v.to_string(),
                        })
                        .collect()
                })
                .collect();
            let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
            for row in &table {
                for (i, c) in row.iter().enumerate() {
                    widths[i] = widths[i].max(c.len());
                }
            }
            let print = |cells: Vec<&str>| {
                let line: Vec<String> = cells
                    .iter()
                    .enumerate()
                    .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
                    .collect();
                println!("{}", line.join("   ").trim_end());
            };
            print(header.to_vec());
            for row in &table {
                print(row.iter().map(String::as_str).collect());
            }
        }
        other => {
            return Err(Error::msg(format!(
                "invalid format option {other:?}: use table or json"
            )))
        }
    }
    Ok(())
}

/// The user owning a container's state directory, by name, or `#uid` without one.
fn owner_of(dir: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let Ok(uid) = std::fs::metadata(dir).map(|m| m.uid()) else {
        return String::new();
    };
    brig::linux::user::passwd_field("/etc/passwd", uid, 0).unwrap_or_else(|| format!("#{uid}"))
}
