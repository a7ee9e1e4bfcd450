//! `narbor config-keys` (hidden): the list of `serve`'s settings that the
//! command line is made from, for the tests that check the example config,
//! the docs and the NixOS module against it.

use std::process::ExitCode;

use crate::config::{Fallback, KEYS};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print a JSON array, one object per key.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.json {
        let all: Vec<serde_json::Value> = KEYS.iter().map(|k| k.to_json()).collect();
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(ExitCode::SUCCESS);
    }
    for key in KEYS {
        let default = match (key.default_value(), key.default) {
            (Some(value), _) => value.to_string(),
            (None, Fallback::Derived(text)) => text.to_owned(),
            (None, _) => "none".to_owned(),
        };
        let env = key.env.unwrap_or("");
        println!("{:<21} --{:<21} {env:<21} {default}", key.name, key.flag);
    }
    Ok(ExitCode::SUCCESS)
}
