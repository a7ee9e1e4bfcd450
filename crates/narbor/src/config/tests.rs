//! The key table against what uses it: clap's flags, serde's keys, the
//! types of the fields, and the defaults `resolve` applies.

use std::collections::BTreeSet;

use clap::{ArgAction, Args};

use super::keys::{Fallback, Kind};
use super::{ServeOptions, KEYS};

fn command() -> clap::Command {
    ServeOptions::augment_args(clap::Command::new("serve"))
}

#[test]
fn names_flags_and_variables_are_unique() {
    for (what, all) in [
        ("key", KEYS.iter().map(|k| k.name).collect::<Vec<_>>()),
        ("flag", KEYS.iter().map(|k| k.flag).collect()),
        ("variable", KEYS.iter().filter_map(|k| k.env).collect()),
    ] {
        let unique: BTreeSet<_> = all.iter().collect();
        assert_eq!(unique.len(), all.len(), "a {what} appears twice: {all:?}");
    }
    for key in KEYS {
        if let Some(env) = key.env {
            assert!(env.starts_with("NARBOR_"), "{}: {env}", key.name);
        }
        assert!(
            !key.help.ends_with('.'),
            "{}: clap's help has no period",
            key.name
        );
    }
}

/// serde reads each field under its entry's key (the kebab-case field name).
#[test]
fn each_field_is_read_under_its_key() {
    assert_eq!(ServeOptions::FIELDS.len(), KEYS.len());
    for (field, key) in ServeOptions::FIELDS {
        assert_eq!(field.replace('_', "-"), key.name);
        if field.contains('_') {
            let err = ServeOptions::from_toml(&format!("{field} = []")).unwrap_err();
            assert!(err.message().contains("unknown field"), "{field}: {err}");
        }
    }
}

/// Every arg of `serve` is an entry, with the flag, variable, value name and
/// help of the entry, and clap's kind of arg fits the entry's kind.
#[test]
fn clap_args_are_the_entries() {
    let cmd = command();
    let args: Vec<_> = cmd.get_arguments().collect();
    assert_eq!(args.len(), KEYS.len());
    for (arg, key) in args.iter().zip(KEYS) {
        assert_eq!(arg.get_long(), Some(key.flag));
        let env = arg.get_env().map(|e| e.to_str().unwrap());
        assert_eq!(env, key.env, "{}", key.name);
        let help = arg.get_help().map(ToString::to_string);
        assert_eq!(help.as_deref(), Some(key.help), "{}", key.name);
        match key.kind {
            Kind::Bool => assert!(matches!(arg.get_action(), ArgAction::SetTrue)),
            Kind::List => assert!(matches!(arg.get_action(), ArgAction::Append)),
            Kind::Text | Kind::Number => {
                assert!(matches!(arg.get_action(), ArgAction::Set), "{}", key.name);
                let names: Vec<String> = arg
                    .get_value_names()
                    .unwrap_or_default()
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                assert_eq!(names, [key.value_name.unwrap()], "{}", key.name);
            }
        }
        assert_eq!(key.value_name.is_none(), key.kind == Kind::Bool);
    }
}

/// A value of the entry's kind is read into the field (its default, or any
/// string for a text without one); a value of another kind is refused, with
/// the key named.
#[test]
fn each_kind_is_what_the_field_reads() {
    for key in KEYS {
        let good = match key.default_value() {
            Some(value) => value.to_string(),
            None => match key.kind {
                Kind::Text => "\"/some/where\"".to_owned(),
                other => panic!("{}: a {} without a default", key.name, other.name()),
            },
        };
        let text = format!("{} = {good}", key.name);
        if let Err(e) = ServeOptions::from_toml(&text) {
            panic!("{text}: {e}");
        }
        let bad = match key.kind {
            Kind::Number | Kind::Bool | Kind::List => "\"text\"",
            Kind::Text => "12",
        };
        let text = format!("{} = {bad}", key.name);
        let err = ServeOptions::from_toml(&text).unwrap_err().to_string();
        assert!(err.contains(&format!("\n{}: ", key.name)), "{text}: {err}");
    }
}

/// The defaults are those of the table, and the help says them.
#[test]
fn defaults_are_the_tables_and_the_help_says_them() {
    let mut file = String::new();
    for key in KEYS {
        if let Some(value) = key.default_value() {
            file.push_str(&format!("{} = {value}\n", key.name));
        }
        match key.default {
            Fallback::Value(items) if key.kind != Kind::Bool => {
                for item in items {
                    assert!(key.help.contains(item), "{}: {}", key.name, key.help);
                }
            }
            Fallback::Derived(_) => assert!(key.help.contains("[default: ")),
            _ => {}
        }
    }
    let none = ServeOptions::default().resolve().unwrap();
    let all = ServeOptions::from_toml(&file).unwrap().resolve().unwrap();
    assert_eq!(format!("{none:?}"), format!("{all:?}"), "{file}");
}
