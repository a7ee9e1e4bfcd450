#!/usr/bin/env bash
# Writes the benchmark report (Markdown, to stdout) from a results directory
# made by scripts/bench.sh: machine.txt, summary.tsv (row, metric, system,
# value per run), targets.tsv, pending.tsv, and notes.md (written by hand:
# analysis, limits, profiles) when present.
set -euo pipefail
dir=${1:-bench/results}
field() { sed -n "s/^$1: //p" "$dir/machine.txt"; }

cat <<EOF
# Benchmarks

narbor against nginx \`proxy_cache\` (and, for publishing, against \`nix copy\`)
on the same machine; the systems of a row are measured in the same run.
Written by \`$(field command)\`; the raw outputs are in \`bench/results/\`
(\`summary.tsv\` has every run's figure, \`raw/\` the load generators' output).

## Machine

- cores: $(field cores); memory: $(field memory); kernel: $(field kernel)
- $(field nginx)
- narbor at $(field narbor)
- $(field started); $(field finished); $(field elapsed)
- $(field settings)

The machine is shared with other engineers who compile while this runs: every
figure is the **median** of several runs, and the systems take turns within
each run, in an order that rotates from run to run, so that noise falls on all
of them alike. Compare ratios, not absolute figures.

## The systems

- **narbor**: \`narbor serve\` (release build) in front of the upstream.
- **nginx module**: nginx configured as the NixOS pull-through cache module
  (numtide/nixos-passthru-cache) configures it; see \`nginx_conf_module\` in
  \`bench/lib.sh\` for what is reproduced.
- **nginx tuned**: the same with \`proxy_cache_lock on\` (waiting as long as a
  fill takes), upstream keep-alive, \`sendfile\` with 2 MiB chunks, larger
  proxy buffers, no access log.
- **static** (row 2 only): the upstream nginx serving the file straight from
  disk with \`sendfile\`, no proxy: what this machine's loopback and \`wrk\` allow.
- The upstream is a plain nginx over a binary cache written by \`nix copy\` plus
  synthetic NARs; the cold rows use it throttled (\`limit_rate\`, per connection).
- Row 7: **narbor** is \`narbor push\` into a local \`docker-registry\`, **nix
  copy** is \`nix copy --to file://...\`, **curl upload only** is the same blobs
  uploaded into the same kind of registry by \`curl\` (the registry's own cost).
- Row 8: **narbor (serve --oci)** serves from a 1M-entry OCI index, **narbor
  (store)** is row 1's store-backed \`narbor serve\`, measured in the same run
  on the same document (fetched once from the OCI server, its upstream).

## Results

EOF

awk -F'\t' '
function median(list,   n, a, i, j, t) {
  n = split(list, a, " ")
  for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] + 0 > t + 0; j--) a[j + 1] = a[j]; a[j + 1] = t }
  return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
function fmt(x) {
  if (x == "") return "–"
  x += 0
  return (x >= 100) ? sprintf("%.0f", x) : (x >= 10) ? sprintf("%.1f", x) : (x >= 1) ? sprintf("%.2f", x) : sprintf("%.3f", x)
}
FILENAME ~ /targets.tsv$/ { kind[$1 SUBSEP $2] = $3; want[$1 SUBSEP $2] = $4; next }
FILENAME ~ /pending.tsv$/ { pend[$1] = $2; next }
{
  k = $1 SUBSEP $2
  if (!(k in seen)) { seen[k] = 1; order[++n] = k; rows[$1] = 1 }
  vals[k SUBSEP $3] = vals[k SUBSEP $3] " " $4
  runs[k SUBSEP $3]++
  # The n-th figure of each system comes from the same run (the systems take
  # turns within a run): pair them for a per-run ratio.
  nth[k SUBSEP $3 SUBSEP runs[k SUBSEP $3]] = $4
}
END {
  title[1] = "1. Warm narinfo hits, 64 connections"
  title[2] = "2. Warm NAR hits, 16 connections"
  title[3] = "3. Cold storm: many clients, one uncached NAR, throttled upstream"
  title[4] = "4. Fleet warming: Nix clients substituting one closure at once, cold"
  title[5] = "5. Memory"
  title[6] = "6. Restart with many stored objects"
  title[7] = "7. Publishing: narbor push against nix copy"
  title[8] = "8. OCI index: narinfo hits through serve --oci"
  # The systems (columns) of each row and the baseline its ratio divides by.
  for (r = 1; r <= 6; r++) { cols[r] = "narbor nginx-module nginx-tuned static"; base[r] = "nginx-tuned" }
  cols[7] = "narbor nix-copy curl"; base[7] = "nix-copy"
  cols[8] = "narbor narbor-store"; base[8] = "narbor-store"
  label["narbor"] = "narbor"; label["nginx-module"] = "nginx module"; label["nginx-tuned"] = "nginx tuned"
  label["static"] = "static"; label["nix-copy"] = "nix copy"; label["narbor-store"] = "narbor (store)"; label["curl"] = "curl upload only"
  short["nginx-tuned"] = "tuned"; short["nix-copy"] = "nix copy"; short["narbor-store"] = "store"
  for (r = 1; r <= 8; r++) {
    if (!(r in rows) && !(r in pend)) continue
    print "### " title[r] "\n"
    if (r in pend) { print "Not measured: " pend[r] ".\n"; continue }
    ns = split(cols[r], sys, " "); b = base[r]
    head = "| metric"; sep = "|---"
    for (s = 1; s <= ns; s++) { head = head " | " ((r == 8 && sys[s] == "narbor") ? "narbor (serve --oci)" : label[sys[s]]); sep = sep "|---" }
    print head " | narbor / " short[b] " | per run | target | met |"
    print sep "|---|---|---|---|"
    for (i = 1; i <= n; i++) {
      k = order[i]; split(k, kk, SUBSEP); if (kk[1] != r) continue
      line = "| " kk[2]
      delete med
      for (s = 1; s <= ns; s++) {
        m = ((k SUBSEP sys[s]) in vals) ? median(vals[k SUBSEP sys[s]]) : ""
        med[sys[s]] = m
        line = line " | " fmt(m) ((m != "" && runs[k SUBSEP sys[s]] > 1) ? " (" runs[k SUBSEP sys[s]] ")" : "")
      }
      ratio = (med["narbor"] != "" && med[b] + 0 != 0) ? med["narbor"] / med[b] : ""
      line = line " | " ((ratio == "") ? "–" : sprintf("%.2f", ratio))
      paired = ""
      for (j = 1; (k SUBSEP "narbor" SUBSEP j) in nth && (k SUBSEP b SUBSEP j) in nth; j++)
        if (nth[k SUBSEP b SUBSEP j] + 0 != 0)
          paired = paired " " nth[k SUBSEP "narbor" SUBSEP j] / nth[k SUBSEP b SUBSEP j]
      line = line " | " ((j > 2 && paired != "") ? sprintf("%.2f", median(paired)) : "–")
      tk = kind[k]; tw = want[k]; met = ""; tt = "–"
      if (tk == "ratio_ge") { tt = "≥ " tw " × " short[b]; met = (ratio != "" && ratio >= tw) ? "yes" : "**no**" }
      else if (tk == "ratio_le") { tt = "≤ " tw " × " short[b]; met = (ratio != "" && ratio <= tw) ? "yes" : "**no**" }
      else if (tk == "le") { tt = "≤ " tw; met = (med["narbor"] != "" && med["narbor"] + 0 <= tw) ? "yes" : "**no**" }
      else if (tk == "eq") { tt = "= " tw; met = (sprintf("%.2f", med["narbor"]) == sprintf("%.2f", tw)) ? "yes" : "**no**" }
      print line " | " tt " | " met " |"
    }
    print ""
  }
}' "$dir/targets.tsv" "$dir/pending.tsv" "$dir/summary.tsv"

cat <<'EOF'
Figures in parentheses are the number of runs a median is taken over. Units are
in the metric names: MiB/s counts response bodies as `wrk` reads them; "upstream
bytes / object" is the NAR bytes the upstream sent divided by the object's size
(1.00: fetched once); "narbor / tuned" divides narbor's median by the tuned
nginx's (row 7: by nix copy's; row 8: by narbor's store-backed serve): above 1
is better for rates, below 1 for times, CPU, memory and latency; "per run" is the median
of that ratio taken run by run (each run measures the systems back to back, so
this pairs figures taken under similar load). The "met" column judges the
ratio of medians.
EOF
if [ -f "$dir/notes.md" ]; then
  echo
  cat "$dir/notes.md"
fi
