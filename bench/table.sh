#!/bin/sh
# bench/table.sh < bench-output: the `bench <name> <system> <value> <unit>`
# lines of one `make bench` run as a Markdown table, one row a measurement,
# one column a system, and each peer's figure as a ratio to cio's
# ("4.2x" = cio is 4.2 times better: faster, or smaller for sizes).
awk '
$1 == "bench" && $4 != "unavailable" && $4 != "failed" {
    key = $2 " (" $5 ")"
    if (!(key in seen)) { seen[key] = 1; order[n++] = key; unit[key] = $5 }
    val[key, $3] = $4
    if (!($3 in sys)) { sys[$3] = 1; systems[m++] = $3 }
}
function better(u) { return u ~ /\/s$/ ? "higher" : "lower" }
END {
    line = "| measurement | cio |"; sep = "| --- | --- |"
    for (j = 0; j < m; j++) if (systems[j] != "cio") {
        line = line " " systems[j] " |"; sep = sep " --- |"
    }
    print line; print sep
    for (i = 0; i < n; i++) {
        k = order[i]; c = val[k, "cio"]
        row = "| " k " (" better(unit[k]) " is better) | " (c == "" ? "-" : c) " |"
        for (j = 0; j < m; j++) {
            s = systems[j]; if (s == "cio") continue
            v = val[k, s]
            if (v == "") { row = row " - |"; continue }
            r = ""
            if (c != "" && c + 0 > 0 && v + 0 > 0)
                r = sprintf(" (%.1fx)", better(unit[k]) == "higher" ? c / v : v / c)
            row = row " " v r " |"
        }
        print row
    }
}'
