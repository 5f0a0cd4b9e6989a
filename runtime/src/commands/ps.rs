//! `brig ps`: list the processes of a container, as ps(1) or JSON.

use brig::state::Root;
use brig::Result;

#[derive(clap::Args)]
pub struct PsArgs {
    /// Select one of: table or json.
    #[arg(short, long, default_value = "table")]
    format: String,
    id: String,
    /// Arguments for ps (default: -ef).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    ps_args: Vec<String>,
}

#[inline(never)]
pub fn run(root: &Root, a: &PsArgs) -> Result<()> {
    print!("{}", brig::ps::render(root, &a.id, &a.format, &a.ps_args)?);
    Ok(())
}
