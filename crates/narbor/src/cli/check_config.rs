//! `narbor check-config`: validate a serve config file without starting.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::ServeOptions;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The TOML config file to check.
    file: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let settings = super::serve::settings(Some(&args.file), ServeOptions::default())?;
    let listen: Vec<String> = settings.listen.iter().map(ToString::to_string).collect();
    println!("{}: ok", args.file.display());
    println!("  listen        {}", listen.join(" "));
    println!("  cache-dir     {}", settings.cache_dir.display());
    println!("  max-size      {} bytes", settings.max_size);
    println!("  inactive      {}s", settings.inactive.as_secs());
    if settings.upstreams.is_empty() {
        println!("  upstreams     none (serving only what is stored)");
    } else {
        let urls: Vec<String> = settings
            .upstreams
            .iter()
            .map(|u| match u.credential {
                Some(_) => format!("{} (with the URL's credentials)", u.url),
                None => u.url.clone(),
            })
            .collect();
        println!("  upstreams     {}", urls.join(" "));
    }
    println!("  priority      {}", settings.priority);
    if let Some(oci) = &settings.oci {
        println!(
            "  oci           {oci} (index refreshed every {}s, saved in {})",
            settings.index_ttl.as_secs(),
            settings.index_dir.display()
        );
    }
    println!("  narinfo-ttl   {}s", settings.narinfo_ttl.as_secs());
    println!("  negative-ttl  {}s", settings.negative_ttl.as_secs());
    println!("  trusted-keys  {}", settings.trusted_keys.len());
    if let Some(key) = &settings.sign_key {
        println!("  signing as    {}", key.public_key());
    }
    if settings.lan {
        println!("  lan           yes (advertised over mDNS)");
    }
    println!("  stats public  {}", yes_no(settings.stats_public));
    if let Some(tls) = &settings.tls {
        println!(
            "  https         {} (certificate and key load)",
            tls.files().cert.display()
        );
        let redirect: Vec<String> = settings
            .http_redirect_listen
            .iter()
            .map(ToString::to_string)
            .collect();
        if !redirect.is_empty() {
            println!("  redirects     {}", redirect.join(" "));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}
