#!/usr/bin/env python3
"""Summarize benches/load/run.sh results (a TSV, one row per wrk run) into
markdown tables: medians over rounds, ratios, CPU cost per request, and
the issue's targets; with --tls, benches/load/tls.sh results (one row per
wrk or h2load run), against nginx TLS proxy_pass.

Usage: summarize.py results.tsv | summarize.py --tls results.tsv"""

import os
import statistics
import sys

QUOTA = float(os.environ.get("SCALE_QUOTA", "0.3"))

NAMES = {
    "A": "A direct: nginx upstream",
    "B": "B portal-gate, public path",
    "C": "C portal-gate, verified, cache hit",
    "D": "D portal-gate, verified, cache off",
    "E": "E nginx proxy_pass",
    "F": "F nginx auth_request",
    "G": "G Caddy reverse_proxy",
    "H": "H Caddy forward_auth",
    "S1": "S1 portal-gate, 1 worker (cores 0-1)",
    "S2": "S2 portal-gate, 2 workers (cores 0-1)",
    "Q1": f"Q1 portal-gate, 1 worker, CPU quota {QUOTA:g} core",
    "Q2": f"Q2 portal-gate, 2 workers, CPU quota {2 * QUOTA:g} core",
}
FIELDS = ["phase", "cfg", "round", "conns", "rps", "p50_us", "p99_us", "requests",
          "non2xx", "sockerr", "wrk_cpu_s", "proxy_cpu_s", "upstream_cpu_s", "wall_s", "busy_s", "proxy_sys_s",
          "accepts", "mean_us", "max_us"]


def load(path):
    rows = []
    with open(path) as f:
        for line in f:
            if not line.strip() or line.startswith("#"):
                continue
            parts = line.rstrip("\n").split("\t")
            row = dict(zip(FIELDS, parts))
            for k in FIELDS[3:]:
                row[k] = float(row.get(k, 0))
            row["wall_s"] = row["wall_s"] or 1e-9
            rows.append(row)
    return rows


def fmt_us(us):
    if us >= 1000:
        return f"{us / 1000:.2f} ms"
    return f"{us:.0f} µs"


def sfmt(us):
    return ("+" if us >= 0 else "−") + fmt_us(abs(us))


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def summarize(rows, phase):
    by = {}
    for r in rows:
        if r["phase"] == phase:
            by.setdefault(r["cfg"], []).append(r)
    out = {}
    base = {r["round"]: r["p99_us"] for r in by.get("A", [])}
    for cfg, rs in by.items():
        reqs = [r["requests"] for r in rs]
        out[cfg] = {
            "n": len(rs),
            "conns": int(rs[0]["conns"]),
            "rps": med([r["rps"] for r in rs]),
            "rps_min": min(r["rps"] for r in rs),
            "rps_max": max(r["rps"] for r in rs),
            "p50": med([r["p50_us"] for r in rs]),
            "p99": med([r["p99_us"] for r in rs]),
            "proxy_us": med([r["proxy_cpu_s"] / q * 1e6 for r, q in zip(rs, reqs) if q]),
            "proxy_sys_us": med([r["proxy_sys_s"] / q * 1e6 for r, q in zip(rs, reqs) if q]),
            "up_us": med([r["upstream_cpu_s"] / q * 1e6 for r, q in zip(rs, reqs) if q]),
            "srv_busy": med([(r["proxy_cpu_s"] + r["upstream_cpu_s"]) / r["wall_s"] for r in rs]),
            "proxy_busy": med([r["proxy_cpu_s"] / r["wall_s"] for r in rs]),
            "wrk_busy": med([r["wrk_cpu_s"] / r["wall_s"] for r in rs]),
            "other": med([max(0.0, r["busy_s"] - r["wrk_cpu_s"] - r["proxy_cpu_s"] - r["upstream_cpu_s"])
                          / r["wall_s"] for r in rs]),
            "d99": med([r["p99_us"] - base[r["round"]] for r in rs if r["round"] in base]),
            "bad": sum(r["non2xx"] + r["sockerr"] for r in rs),
            "mean": med([r["mean_us"] for r in rs]),
            "max": med([r["max_us"] for r in rs]),
            "conn_per_req": med([r["accepts"] / q for r, q in zip(rs, reqs) if q]),
            "order": min(rows.index(r) for r in rs),
        }
    return out


def ratio(x, base):
    return f"{x / base:.2f}" if base else "–"


def load_table(s):
    a, e, f = (s.get(k, {}).get("rps") for k in "AEF")
    print("| configuration | req/s (median) | min–max | × direct | × nginx proxy_pass | × nginx auth_request "
          "| p50 | p99 | proxy CPU µs/req | upstream CPU µs/req | server core busy | wrk core busy | other CPU |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for cfg in sorted(s):
        x = s[cfg]
        proxy = f"{x['proxy_us']:.1f}" if cfg != "A" else "–"
        print(f"| {NAMES.get(cfg, cfg)} | {x['rps']:,.0f} | {x['rps_min']:,.0f}–{x['rps_max']:,.0f} "
              f"| {ratio(x['rps'], a)} | {ratio(x['rps'], e)} | {ratio(x['rps'], f)} "
              f"| {fmt_us(x['p50'])} | {fmt_us(x['p99'])} | {proxy} "
              f"| {x['up_us']:.1f} | {x['srv_busy'] * 100:.0f}% | {x['wrk_busy'] * 100:.0f}% | {x['other']:.2f} |")
    bad = sum(x["bad"] for x in s.values())
    if bad:
        print(f"\n**warning: {bad:.0f} non-2xx responses or socket errors** (see the wrk outputs)")


def cost_table(s):
    """Server-core CPU per request, and the throughput one fully used server
    core would give at that cost. Contention from other processes on a shared
    machine moves req/s a lot and CPU per request much less."""
    tot = {cfg: x["proxy_us"] * (cfg != "A") + x["up_us"] for cfg, x in s.items()}
    a, e, f = tot.get("A"), tot.get("E"), tot.get("F")
    print("| configuration | proxy µs/req | of which kernel | upstream µs/req | server core µs/req | req/s per server core "
          "| × direct | × nginx proxy_pass | × nginx auth_request |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for cfg in sorted(s):
        x, t = s[cfg], tot[cfg]
        proxy = f"{x['proxy_us']:.1f}" if cfg != "A" else "–"
        sys_ = f"{x['proxy_sys_us']:.1f}" if cfg != "A" else "–"
        cells = [f"{t_ / t:.2f}" if t_ else "–" for t_ in (a, e, f)]
        print(f"| {NAMES.get(cfg, cfg)} | {proxy} | {sys_} | {x['up_us']:.1f} | {t:.1f} | {1e6 / t:,.0f} | "
              + " | ".join(cells) + " |")


def peers_table(s, gate="C"):
    """The gate's cache hit against each peer of the same run: the plain
    proxies (what the gate costs as a proxy) and the gating proxies (what
    it costs against the usual way of putting a check in front)."""
    if gate not in s:
        return
    g = s[gate]
    gtot = g["proxy_us"] + g["up_us"]
    print(f"| peer | kind | peer req/s | {gate} req/s ÷ peer | peer server core µs/req "
          f"| {gate} ÷ peer, req/s per server core | peer p99 | {gate} p99 − peer p99 |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for cfg, kind in (("E", "plain proxy"), ("G", "plain proxy"), ("F", "gating proxy"), ("H", "gating proxy")):
        if cfg not in s:
            continue
        x = s[cfg]
        tot = x["proxy_us"] + x["up_us"]
        print(f"| {NAMES.get(cfg, cfg)} | {kind} | {x['rps']:,.0f} | {g['rps'] / x['rps']:.2f} | {tot:.1f} "
              f"| {tot / gtot:.2f} | {fmt_us(x['p99'])} | {sfmt(g['p99'] - x['p99'])} |")


def lat_table(s, base):
    print("| configuration | req/s | p50 | p99 | p50 added over direct | p99 added over direct (per round, median) |")
    print("|---|---:|---:|---:|---:|---:|")
    for cfg in sorted(s):
        x = s[cfg]
        if base:
            d50 = sfmt(x["p50"] - base["p50"]) if cfg != "A" else "–"
            d99 = sfmt(x["d99"]) if cfg != "A" else "–"
        else:
            d50 = d99 = "–"
        print(f"| {NAMES.get(cfg, cfg)} | {x['rps']:,.0f} | {fmt_us(x['p50'])} | {fmt_us(x['p99'])} | {d50} | {d99} |")


def targets(s, lat):
    def get(cfg, k, src=s):
        return src.get(cfg, {}).get(k)
    print("| target | measured | met? |")
    print("|---|---|---|")
    c, e, f, a = (get(k, "rps") for k in "CEFA")
    if c and e:
        print(f"| cache hit ≥ 1.0× nginx proxy_pass (req/s) | {c / e:.2f}× | {'yes' if c / e >= 1.0 else 'no'} |")
    if c and f:
        print(f"| cache hit ≥ 1.5× nginx auth_request (req/s) | {c / f:.2f}× | {'yes' if c / f >= 1.5 else 'no'} |")
    tot = {k: s[k]["proxy_us"] + s[k]["up_us"] for k in "CEF" if k in s}
    if "C" in tot and "E" in tot:
        r = tot["E"] / tot["C"]
        print(f"| cache hit ≥ 1.0× nginx proxy_pass (req/s per server core, from CPU/request) | {r:.2f}× | {'yes' if r >= 1.0 else 'no'} |")
    if "C" in tot and "F" in tot:
        r = tot["F"] / tot["C"]
        print(f"| cache hit ≥ 1.5× nginx auth_request (req/s per server core, from CPU/request) | {r:.2f}× | {'yes' if r >= 1.5 else 'no'} |")
    for src, label in ((s, "under load"), (lat, "1 connection")):
        if all(k in src for k in "CEA"):
            # Added p99 per round (same round, so the same background load),
            # then the median over rounds.
            dc, de = src["C"]["d99"], src["E"]["d99"]
            print(f"| p99 added over direct ≤ proxy_pass's ({label}) | gate {sfmt(dc)}, "
                  f"nginx {sfmt(de)} | {'yes' if dc <= de else 'no'} |")
    cb, ce = get("C", "proxy_us"), get("E", "proxy_us")
    if cb and ce:
        print(f"| (info) proxy CPU per request, gate cache hit vs nginx proxy_pass | "
              f"{cb:.1f} vs {ce:.1f} µs ({cb / ce:.2f}×) | – |")


def scale_table(s):
    print("| configuration | req/s (median) | p50 | p99 | gate CPU µs/req | gate cores busy | upstream CPU µs/req | wrk core busy | other CPU |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for cfg in sorted(s):
        x = s[cfg]
        print(f"| {NAMES.get(cfg, cfg)} | {x['rps']:,.0f} | {fmt_us(x['p50'])} | {fmt_us(x['p99'])} "
              f"| {x['proxy_us']:.1f} | {x['proxy_busy']:.2f} | {x['up_us']:.1f} | {x['wrk_busy'] * 100:.0f}% | {x['other']:.2f} |")
    if "S1" in s and "S2" in s:
        c1, c2 = s["S1"]["proxy_us"], s["S2"]["proxy_us"]
        print()
        print(f"- measured req/s, 2 workers / 1 worker (box shared with wrk and nginx): "
              f"{s['S2']['rps'] / s['S1']['rps']:.2f}×")
        print(f"- CPU per request, 2 workers / 1 worker: {c2 / c1:.2f}× "
              f"(1.00 = a second worker costs nothing per request)")
        print(f"- projected 2-core speedup if the gate had 2 dedicated cores = 2 × {c1:.1f} / {c2:.1f} "
              f"= {2 * c1 / c2:.2f}× (an upper bound: lock waits and idle time are not CPU)")
    if "Q1" in s and "Q2" in s:
        print(f"- under a CPU quota ({QUOTA:g} core per worker, both workers free to run at once on "
              f"2 cores): 2 workers / 1 worker = {s['Q2']['rps'] / s['Q1']['rps']:.2f}× req/s, "
              f"gate cores busy {s['Q1']['proxy_busy']:.2f} and {s['Q2']['proxy_busy']:.2f}")


STREAMS = os.environ.get("H2_STREAMS", "10")
TLS_PHASES = {
    "ka": "HTTP/1.1 keep-alive over TLS 1.3 (wrk -t1 -c{c})",
    "new": "A new connection per request, each a full TLS 1.3 handshake "
           "(wrk -t1 -c{c} -H 'Connection: close', session resumption off in the client)",
    "resume": "A new connection per request, each resuming the TLS session "
              "(wrk -t1 -c{c} -H 'Connection: close', as wrk does by itself)",
    "h2": f"HTTP/2 over TLS 1.3, by ALPN (h2load -t1 -c{{c}} -m{STREAMS})",
    "h2c": f"HTTP/2 cleartext, prior knowledge (h2load -t1 -c{{c}} -m{STREAMS})",
}
TLS_NAMES = {
    "T-direct": "T-direct: nginx upstream, plaintext",
    "T-nginx": "T-nginx: nginx proxy_pass",
    "T-auth": "T-auth: nginx auth_request",
    "T-caddy": "T-caddy: Caddy reverse_proxy",
    "T-caddy-auth": "T-caddy-auth: Caddy forward_auth",
}
TLS_BASE = "T-nginx"


def tls_name(cfg):
    if cfg.startswith("T-gate:"):
        return f"{cfg}: portal-gate, verified, cache hit"
    return TLS_NAMES.get(cfg, cfg)


def tls_table(s, phase):
    b = s.get(TLS_BASE)
    btot = b["proxy_us"] + b["up_us"] if b else None
    print("| configuration | req/s (median) | min–max | × nginx | p50 | p99 | mean | max "
          "| proxy CPU µs/req (kernel) | upstream CPU µs/req | server core µs/req | × nginx, per server core "
          "| TCP conns/req | client core busy | other CPU |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for cfg in sorted(s, key=lambda c: s[c]["order"]):
        x = s[cfg]
        tot = x["proxy_us"] + x["up_us"]
        direct = cfg == "T-direct"
        proxy = "–" if direct else f"{x['proxy_us']:.1f} ({x['proxy_sys_us']:.1f})"
        pct = (f"{fmt_us(x['p50'])} | {fmt_us(x['p99'])}" if x["p50"] or x["p99"] else "– | –")
        print(f"| {tls_name(cfg)} | {x['rps']:,.0f} | {x['rps_min']:,.0f}–{x['rps_max']:,.0f} "
              f"| {ratio(x['rps'], b['rps'] if b else None)} | {pct} | {fmt_us(x['mean'])} | {fmt_us(x['max'])} "
              f"| {proxy} | {x['up_us']:.1f} | {tot:.1f} | {ratio(btot, tot) if tot else '–'} "
              f"| {x['conn_per_req']:.2f} | {x['wrk_busy'] * 100:.0f}% | {x['other']:.2f} |")
    bad = sum(x["bad"] for x in s.values())
    if bad:
        print(f"\n**warning: {bad:.0f} non-2xx responses or errors** (see the client outputs)")
    if phase in ("new", "resume"):
        few = [c for c, x in s.items() if x["conn_per_req"] < 0.9]
        if few:
            print(f"\n**warning: fewer TCP connections than requests in {', '.join(few)}**: "
                  "the client kept connections open")
    if phase not in ("new", "resume"):
        many = [c for c, x in s.items() if x["conn_per_req"] > 0.05]
        if many:
            print(f"\n**warning: connections were reopened in {', '.join(many)}** (TCP conns/req > 0.05)")
    busy = [c for c, x in s.items() if x["wrk_busy"] >= 0.95]
    if busy:
        print(f"\n**The client's core was saturated in {', '.join(busy)}**: there req/s is the client's limit; "
              "compare CPU per request.")


def tls_overview(by_phase):
    """Per configuration and phase: req/s and CPU per request against nginx
    proxy_pass of the same phase (req/s ×, per-server-core ×)."""
    phases = [p for p in TLS_PHASES if p in by_phase]
    cfgs = []
    for p in phases:
        for c in sorted(by_phase[p], key=lambda c: by_phase[p][c]["order"]):
            if c not in cfgs and c != "T-direct":
                cfgs.append(c)
    print("| configuration | " + " | ".join(f"{p} req/s × nginx | {p} per core × nginx" for p in phases) + " |")
    print("|---|" + "---:|---:|" * len(phases))
    for c in cfgs:
        cells = []
        for p in phases:
            s, b = by_phase[p].get(c), by_phase[p].get(TLS_BASE)
            if not s or not b:
                cells += ["–", "–"]
                continue
            cells += [ratio(s["rps"], b["rps"]), ratio(b["proxy_us"] + b["up_us"], s["proxy_us"] + s["up_us"])]
        print(f"| {tls_name(c)} | " + " | ".join(cells) + " |")


def tls_main(rows):
    by_phase = {p: summarize(rows, p) for p in TLS_PHASES if any(r["phase"] == p for r in rows)}
    for phase, s in by_phase.items():
        n = max(x["n"] for x in s.values())
        conns = next(iter(s.values()))["conns"]
        print(f"### {TLS_PHASES[phase].format(c=conns)}, median of {n} rounds\n")
        tls_table(s, phase)
        print()
    if by_phase:
        print("### Overview: each configuration against nginx proxy_pass of the same protocol\n")
        tls_overview(by_phase)
        print()


def main():
    if sys.argv[1] == "--tls":
        tls_main(load(sys.argv[2]))
        return
    rows = load(sys.argv[1])
    phases = []
    for r in rows:
        if r["phase"] not in phases:
            phases.append(r["phase"])
    load_s = summarize(rows, "load") if "load" in phases else {}
    lat_s = summarize(rows, "lat1") if "lat1" in phases else {}
    if load_s:
        n = max(x["n"] for x in load_s.values())
        conns = next(iter(load_s.values()))["conns"]
        print(f"### Throughput and latency under load (wrk -t1 -c{conns}, median of {n} rounds)\n")
        load_table(load_s)
        print()
        print("### CPU cost per request (medians; robust to other load on the machine)\n")
        cost_table(load_s)
        print()
        if "C" in load_s and any(k in load_s for k in "EFGH"):
            print("### The gate's cache hit (C) against each peer (plain and gating proxies)\n")
            peers_table(load_s)
            print()
    if lat_s:
        print("### Latency with one connection (wrk -t1 -c1: no queueing, the cost of the hop)\n")
        lat_table(lat_s, lat_s.get("A"))
        print()
    if load_s:
        print("### Targets\n")
        targets(load_s, lat_s)
        print()
    if "scale" in phases:
        sc = summarize(rows, "scale")
        n = max(x["n"] for x in sc.values())
        print(f"### Core scaling (median of {n} rounds)\n")
        scale_table(sc)
        print()


if __name__ == "__main__":
    main()
