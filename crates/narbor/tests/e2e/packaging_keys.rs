//! The one list of `narbor serve`'s settings, as `narbor config-keys --json`
//! prints it from the binary, against everything else that names them:
//! `serve --help`, the example config `packaging/narbor.toml`, the table of
//! keys in `docs/configuration.md`, and the keys the NixOS module writes. A
//! setting added to narbor, renamed or dropped fails here until each of them
//! says so; nothing here lists the keys itself.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::packaging::{nix_eval_json, repo_root};
use crate::support::{narbor, run_ok, stdout_str};

/// One setting, as `narbor config-keys --json` describes it.
#[derive(Debug, Deserialize)]
pub struct ConfigKey {
    /// The config file's key.
    pub key: String,
    /// The flag, with its `--`.
    pub flag: String,
    pub value_name: Option<String>,
    pub env: Option<String>,
    /// `text`, `number`, `bool` or `list` (of strings).
    pub kind: String,
    /// The built-in default, when it is a value.
    pub default: Option<Value>,
    /// How the default is worked out at start, when it is not a value.
    pub derived_default: Option<String>,
}

impl ConfigKey {
    fn is_list(&self) -> bool {
        self.kind == "list"
    }
}

/// Every setting, in the binary's order.
pub fn config_keys() -> &'static [ConfigKey] {
    static KEYS: OnceLock<Vec<ConfigKey>> = OnceLock::new();
    KEYS.get_or_init(|| {
        let out = run_ok(narbor().args(["config-keys", "--json"]));
        let keys: Vec<ConfigKey> =
            serde_json::from_slice(&out.stdout).expect("config-keys printed its JSON");
        assert!(keys.len() > 20, "{keys:?}");
        keys
    })
}

fn config_key(name: &str) -> Option<&'static ConfigKey> {
    config_keys().iter().find(|k| k.key == name)
}

fn names() -> BTreeSet<&'static str> {
    config_keys().iter().map(|k| k.key.as_str()).collect()
}

/// Panics unless every key is one narbor knows, with a value of its kind.
pub fn check_config_types(config: &Map<String, Value>) {
    for (name, value) in config {
        let key = config_key(name).unwrap_or_else(|| panic!("unknown config key {name}"));
        let ok = match key.kind.as_str() {
            "list" => value
                .as_array()
                .is_some_and(|items| items.iter().all(Value::is_string)),
            "bool" => value.is_boolean(),
            "number" => value.is_u64(),
            "text" => value.is_string(),
            other => panic!("{name}: unknown kind {other}"),
        };
        assert!(ok, "{name} = {value} has the wrong type (a {})", key.kind);
    }
}

/// `serve --help` has exactly the flags and environment variables of the
/// list (and `--config`): a new option cannot be left out of it.
#[test]
fn config_keys_are_exactly_the_serve_options() {
    let out = run_ok(narbor().args(["serve", "--help"]));
    let help = stdout_str(&out);
    let from_help: BTreeSet<&str> = help
        .split_whitespace()
        .filter(|w| w.starts_with("--"))
        .map(|w| w.trim_end_matches([',', '.', ')']))
        .filter(|w| !matches!(*w, "--" | "--config" | "--help" | "--version"))
        .collect();
    let flags: BTreeSet<&str> = config_keys().iter().map(|k| k.flag.as_str()).collect();
    assert_eq!(from_help, flags, "serve's flags and the config keys differ");
    let env_in_help: BTreeSet<&str> = help
        .split("[env: ")
        .skip(1)
        .map(|rest| rest.split(['=', ']']).next().unwrap())
        .filter(|v| *v != "NARBOR_CONFIG")
        .collect();
    let env: BTreeSet<&str> = config_keys()
        .iter()
        .filter_map(|k| k.env.as_deref())
        .collect();
    assert_eq!(
        env_in_help, env,
        "serve's variables and the config keys' differ"
    );
    // And narbor accepts the example config as shipped.
    run_ok(
        narbor()
            .arg("check-config")
            .arg(repo_root().join("packaging/narbor.toml")),
    );
}

/// The example config, with its commented-out keys uncommented, as parsed
/// by Nix's own TOML reader.
fn example_config(uncomment: bool) -> Map<String, Value> {
    let text = std::fs::read_to_string(repo_root().join("packaging/narbor.toml")).unwrap();
    let text: String = text
        .lines()
        .map(|line| match line.strip_prefix('#') {
            Some(rest) if uncomment && rest.starts_with(|c: char| c.is_ascii_lowercase()) => {
                format!("{rest}\n")
            }
            _ => format!("{line}\n"),
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("narbor.toml");
    std::fs::write(&file, text).unwrap();
    let expr = format!("builtins.fromTOML (builtins.readFile {})", file.display());
    match nix_eval_json(&expr) {
        Value::Object(map) => map,
        other => panic!("not a table: {other}"),
    }
}

/// `packaging/narbor.toml` has every key: those with a default set to it,
/// those without commented out with an example of their kind.
#[test]
fn example_config_has_every_key_with_its_type() {
    let all = example_config(true);
    let keys: BTreeSet<&str> = all.keys().map(String::as_str).collect();
    assert_eq!(keys, names(), "packaging/narbor.toml keys");
    check_config_types(&all);

    // Without uncommenting: the defaults, and none of the keys that have none.
    let defaults = example_config(false);
    for key in config_keys() {
        match (&key.default, &key.derived_default) {
            (Some(value), _) => assert_eq!(
                defaults.get(&key.key),
                Some(value),
                "{} is set to its default",
                key.key
            ),
            // Worked out at start; the example may say what packaging makes it.
            (None, Some(_)) => {}
            (None, None) => assert!(
                !defaults.contains_key(&key.key),
                "{} has no default: only an example, commented out",
                key.key
            ),
        }
    }
}

/// The spans between backticks in a Markdown table cell.
fn code_spans(cell: &str) -> Vec<&str> {
    cell.split('`').skip(1).step_by(2).collect()
}

/// `docs/configuration.md`'s table of keys has a row for each key, and only
/// those, with the key's flag, environment variable and default.
#[test]
fn docs_table_has_every_key_with_its_flag_variable_and_default() {
    let text = std::fs::read_to_string(repo_root().join("docs/configuration.md")).unwrap();
    let header = "| key | flag | environment | default | why that default |";
    let start = text.find(header).expect("the table of keys") + header.len();
    let rows: Vec<&str> = text[start..]
        .lines()
        .skip(2) // the end of the header line, and |---|
        .take_while(|l| l.starts_with('|'))
        .collect();
    let mut seen = BTreeSet::new();
    let mut problems = Vec::new();
    for row in rows {
        let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
        assert_eq!(cells.len(), 5, "{row}");
        let (name, flag, env, default) = (cells[0], cells[1], cells[2], cells[3]);
        let name = code_spans(name).first().copied().unwrap_or(name);
        let Some(key) = config_key(name) else {
            problems.push(format!("{name}: not a key narbor knows"));
            continue;
        };
        if !seen.insert(name) {
            problems.push(format!("{name}: two rows"));
        }
        if cells[0].contains("(list)") != key.is_list() {
            problems.push(format!(
                "{name}: `(list)` is said of lists, and only of them"
            ));
        }
        let want = match &key.value_name {
            Some(v) => format!("{} {v}", key.flag),
            None => key.flag.clone(),
        };
        if code_spans(flag).first() != Some(&want.as_str()) {
            problems.push(format!("{name}: flag {flag:?}, want `{want}`"));
        }
        if flag.contains("(repeatable)") != key.is_list() {
            problems.push(format!(
                "{name}: a list's flag, and only a list's, is repeatable"
            ));
        }
        let vars: BTreeSet<&str> = code_spans(env)
            .into_iter()
            .filter(|v| v.starts_with("NARBOR_"))
            .collect();
        if vars != key.env.iter().map(String::as_str).collect() {
            problems.push(format!("{name}: environment {env:?}, want {:?}", key.env));
        }
        let default_ok = match (&key.default, &key.derived_default) {
            (Some(value), _) => {
                let spans = code_spans(default);
                default == format!("`{}`", spans.first().unwrap_or(&""))
                    && serde_json::from_str::<Value>(spans[0]).ok().as_ref() == Some(value)
            }
            (None, Some(how)) => default.replace('`', "") == *how,
            (None, None) => default.starts_with("none"),
        };
        if !default_ok {
            let want = key
                .default
                .as_ref()
                .map(ToString::to_string)
                .or(key.derived_default.clone())
                .unwrap_or("none".to_owned());
            problems.push(format!("{name}: default {default:?}, want {want}"));
        }
    }
    for name in names() {
        if !seen.contains(name) {
            problems.push(format!("{name}: no row"));
        }
    }
    assert!(
        problems.is_empty(),
        "docs/configuration.md's table of keys:\n{}",
        problems.join("\n")
    );
}

/// The keys the NixOS module writes into its generated config: the names in
/// its `generated` block. Each must be a key narbor knows.
#[test]
fn module_writes_only_known_config_keys() {
    let text = std::fs::read_to_string(repo_root().join("nix/module.nix")).unwrap();
    let start = text
        .find("  generated =")
        .expect("module has a `generated` block");
    let end = start + text[start..].find("\n\n").expect("end of `generated`");
    let known = names();
    let mut written = BTreeSet::new();
    for line in text[start..end].lines() {
        // Every `NAME = ` on the line, NAME made of [a-z-].
        let mut rest = line;
        while let Some(at) = rest.find(" = ") {
            let before = &rest[..at];
            let name_start = before
                .rfind(|c: char| !(c.is_ascii_lowercase() || c == '-'))
                .map_or(0, |i| i + 1);
            let name = &before[name_start..];
            if name.contains('-') || known.contains(name) {
                written.insert(name.to_string());
            }
            rest = &rest[at + 3..];
        }
    }
    for key in &written {
        assert!(
            known.contains(key.as_str()),
            "module writes unknown key {key}"
        );
    }
    // The options the module exposes map to these keys.
    for key in [
        "listen",
        "cache-dir",
        "max-size",
        "upstreams",
        "no-upstream",
        "priority",
        "trusted-keys",
        "sign-key-file",
        "stats-public",
        "lan",
        "tls-cert",
        "tls-key",
        "http-redirect-listen",
        "oci",
        "refresh-token-file",
    ] {
        assert!(
            written.contains(key),
            "module never writes {key}: {written:?}"
        );
    }
}

/// The NixOS module's defaults are narbor's: on a machine that sets nothing
/// but `enable`, each key it writes that has a built-in default has that
/// default (`cache-dir`'s is worked out at start; the module names the
/// service's cache directory).
#[test]
fn module_defaults_are_narbors() {
    let result = crate::packaging_module::eval("{ enable = true; }");
    let settings = result["settings"].as_object().expect("settings");
    for (name, value) in settings {
        let key = config_key(name).unwrap_or_else(|| panic!("unknown key {name}"));
        if let Some(default) = &key.default {
            assert_eq!(value, default, "the module's {name}");
        }
    }
}
