# Figures for the benchmarks' tables. Sourced.
#   median [FORMAT]   the median of the numbers on stdin (one per line; "nan" when none),
#                     printed with printf FORMAT (default %.6g: six significant digits)
#   to_ms             wrk's latency on stdin ("812.00us", "4.21ms", "1.02s") in milliseconds

median() {
    sort -g | awk -v format="${1:-%.6g}" '{ v[NR] = $1 }
        END { if (NR == 0) print "nan"
              else printf format "\n", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

to_ms() {
    awk '{ v = $1; if (v ~ /us$/) v = v / 1000; else if (v ~ /ms$/) v = v + 0;
           else if (v ~ /s$/) v = v * 1000; printf "%.2f", v }'
}
