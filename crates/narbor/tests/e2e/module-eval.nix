# Evaluates nix/module.nix without nixpkgs, for the packaging tests.
#
# nixpkgs (its `lib` and the NixOS module system) cannot be had offline, so
# this file stands in for the small part the module uses: the `lib`
# functions it names, option types that check values, and a module system
# that fills options from defaults and the given `user` values, resolves
# mkIf/mkMerge/mkDefault, and merges definitions (attribute sets recursively,
# lists by concatenation). It is a test double: the flake's `checks.module`
# VM test runs the real module system.
#
#   import ./module-eval.nix { user = { enable = true; lanMode = true; }; }
# returns the failing assertions, the generated settings, the unit's
# serviceConfig and the other NixOS options the module defines, as data.
{
  user,
  module ? ../../../../nix/module.nix,
}:

let
  inherit (builtins)
    all
    attrNames
    concatStringsSep
    elem
    filter
    foldl'
    isAttrs
    isBool
    isInt
    isList
    isString
    length
    mapAttrs
    match
    replaceStrings
    stringLength
    substring
    toJSON
    ;

  # Option types: a description and a check.
  type = description: check: { inherit description check; };
  types = rec {
    str = type "string" isString;
    bool = type "boolean" isBool;
    ints.unsigned = type "unsigned integer" (v: isInt v && v >= 0);
    strMatching = re: type "string matching ${re}" (v: isString v && match re v != null);
    nullOr = t: type "null or ${t.description}" (v: v == null || t.check v);
    listOf = t: type "list of ${t.description}" (v: isList v && all t.check v);
    package = type "package" isAttrs;
    submodule = _: type "attribute set" isAttrs;
  };

  lib = {
    inherit types;
    inherit (builtins) any mapAttrs;
    last = list: builtins.elemAt list (length list - 1);
    splitString = sep: s: filter isString (builtins.split (replaceStrings [ "." ] [ "\\." ] sep) s);
    toInt = s: if match "[0-9]+" s != null then builtins.fromJSON s else throw "toInt: ${s}";
    unique = foldl' (acc: x: if elem x acc then acc else acc ++ [ x ]) [ ];
    optional = cond: x: if cond then [ x ] else [ ];
    optionals = cond: xs: if cond then xs else [ ];
    optionalAttrs = cond: set: if cond then set else { };
    optionalString = cond: s: if cond then s else "";
    removePrefix =
      prefix: s:
      let
        n = stringLength prefix;
      in
      if substring 0 n s == prefix then substring n (stringLength s - n) s else s;
    escapeShellArgs = map (a: "'${replaceStrings [ "'" ] [ "'\\''" ] a}'");
    getExe = p: "${p}/bin/${p.meta.mainProgram}";
    literalExpression = text: { inherit text; };
    literalMD = text: { inherit text; };
    mkOption = attrs: attrs // { _isOption = true; };
    mkEnableOption =
      name:
      lib.mkOption {
        type = types.bool;
        default = false;
        description = "Whether to enable ${name}.";
      };
    mkPackageOption =
      pkgs: name: _:
      lib.mkOption {
        type = types.package;
        default = pkgs.${name};
      };
    mkIf = condition: content: {
      _type = "if";
      inherit condition content;
    };
    mkMerge = contents: {
      _type = "merge";
      inherit contents;
    };
    mkDefault = content: {
      _type = "override";
      inherit content;
    };
  };
  # escapeShellArgs returns one string in nixpkgs.
  lib' = lib // {
    escapeShellArgs = args: concatStringsSep " " (lib.escapeShellArgs args);
  };

  store = name: {
    outPath = "/nix/store/00000000000000000000000000000000-${name}";
  };
  pkgs = {
    narbor = store "narbor" // {
      meta.mainProgram = "narbor";
    };
    coreutils = store "coreutils";
    writeShellScript = name: text: store name // { inherit text; };
    formats.toml = _: {
      type = types.submodule { };
      generate = name: value: store name // { inherit value; };
    };
  };

  # Option values: the user's where given (checked against the type), else defaults.
  values =
    path: opts: given:
    let
      unknown = filter (n: !(opts ? ${n})) (attrNames given);
    in
    if unknown != [ ] then
      throw "unknown option ${path}${builtins.head unknown}"
    else
      mapAttrs (
        name: opt:
        if opt._isOption or false then
          let
            value = if given ? ${name} then given.${name} else opt.default;
          in
          if opt.type.check value then
            value
          else
            throw "${path}${name}: ${
              if builtins.isPath value then "a path" else toJSON value
            } is not a ${opt.type.description}"
        else
          values "${path}${name}." opt (given.${name} or { })
      ) opts;

  absent = {
    _absent = true;
  };
  resolve =
    v:
    if isAttrs v && v ? _type then
      if v._type == "if" then
        (if v.condition then resolve v.content else absent)
      else if v._type == "merge" then
        foldl' merge { } (filter (x: x != absent) (map resolve v.contents))
      else if v._type == "override" then
        resolve v.content
      else
        throw "unknown _type ${v._type}"
    else if isAttrs v && !(v ? outPath) then
      let
        resolved = mapAttrs (_: resolve) v;
      in
      removeAbsent resolved
    else
      v;
  removeAbsent = set: builtins.removeAttrs set (filter (n: set.${n} == absent) (attrNames set));
  merge =
    a: b:
    if isAttrs a && isAttrs b && !(a ? outPath) && !(b ? outPath) then
      a // mapAttrs (n: bv: if a ? ${n} then merge a.${n} bv else bv) b
    else if isList a && isList b then
      a ++ b
    else
      throw "conflicting definitions: ${toJSON a} and ${toJSON b}";

  acmeHosts = filter (h: h != null) [
    (user.tls.useACMEHost or null)
    (user.tls.domain or null)
  ];
  config = {
    services.narbor = cfg;
    security.acme.certs = builtins.listToAttrs (
      map (name: {
        inherit name;
        value.group = "acme";
      }) acmeHosts
    );
  };
  evaluated = import module {
    inherit config pkgs;
    lib = lib';
  };
  options = evaluated.options.services.narbor;
  defined = resolve evaluated.config;
  cfg = values "services.narbor." options (builtins.removeAttrs user [ "settings" ]) // {
    # mkDefault definitions from the module, overridden by the user's.
    settings = (defined.services.narbor.settings or { }) // (user.settings or { });
  };
  service = defined.systemd.services.narbor or null;
in
{
  failedAssertions = map (a: a.message) (filter (a: !a.assertion) (defined.assertions or [ ]));
  settings = cfg.settings;
  configFile = toString ((pkgs.formats.toml { }).generate "narbor.toml" cfg.settings);
  startScript = if service == null then null else service.serviceConfig.ExecStart.text;
  service = if service == null then null else service // { serviceConfig = service.serviceConfig // { ExecStart = toString service.serviceConfig.ExecStart; }; };
  firewall = defined.networking.firewall or null;
  acme = defined.security.acme.certs or null;
  nixSettings = defined.nix.settings or null;
}
