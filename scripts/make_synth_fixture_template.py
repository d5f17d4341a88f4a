#!/usr/bin/env python3
"""Write testdata/templates/synth-fixture.toml: a hand-made stand-in for the real C.HASIL-PPWP
template (rough layout by eye from the official PDF), used by `rekap synth` unit/integration tests
so they do not depend on the measured template. Geometry is approximate; field ids and rule shapes
follow docs/interfaces.md. Run: python3 scripts/make_synth_fixture_template.py"""

W, H = 600.0, 900.0
out = []
w = out.append


def r(v):
    return round(v, 2)


def rect(x, y, ww, hh):
    return f"[{r(x)}, {r(y)}, {r(ww)}, {r(hh)}]"


w('schema = 1\nid = "synth-fixture"\ntitle_id = "Fixture"\ntitle_en = "Fixture"\n'
  'source = "hand-made stand-in for tests (scripts/make_synth_fixture_template.py)"\n')

TAG_BITS = ["010011100101110001011001110010110100",
            "110100011010011100101001011100010110",
            "001110010110100011101000110101001011"]
for p in (1, 2, 3):
    w(f"[[pages]]\nnumber = {p}\nwidth_mm = {W}\nheight_mm = {H}\n")
    s = 8.0
    for name, cx, cy in (("top_left", 45, 50), ("top_right", 555, 50),
                         ("bottom_left", 45, 860), ("bottom_right", 555, 860)):
        w(f'[[pages.marks]]\nname = "{name}"\ncenter = [{cx}.0, {cy}.0]\n'
          f"squares = [{rect(cx - s, cy - s, s, s)}, {rect(cx, cy, s, s)}]\n")
    w(f'[pages.tag]\nfamily = "tag36h10"\nid = {100 + p}\nrect = {rect(500, 95, 24, 24)}\n'
      f'bits = "{TAG_BITS[p - 1]}"\n')

BW, BH, GAP, LINE = 14.0, 18.0, 3.0, 0.6


def boxes(x, y, n):
    return "[" + ", ".join(rect(x + i * (BW + GAP), y, BW, BH) for i in range(n)) + "]"


def digits(fid, page, x, y, n=3, kind="digits", guide="none", extra=""):
    w(f'[[fields]]\nid = "{fid}"\npage = {page}\nkind = "{kind}"\nlabel_id = "{fid}"\n'
      f'label_en = "{fid}"\nboxes = {boxes(x, y, n)}\nline_mm = {LINE}\nguide = "{guide}"\n{extra}')


# page 1
rows = [("dpt", 330), ("b1", 375), ("b2", 400), ("b3", 425), ("b4", 450), ("disabled", 625)]
for g, y in rows:
    for sub, x in (("l", 270), ("p", 335), ("lp", 400)):
        digits(f"{g}.{sub}", 1, x, y)
for i, b in enumerate(("received", "used", "returned", "unused")):
    digits(f"ballots.{b}", 1, 400, 500 + 25 * i)

# pages 2 and 3: a tally block = grid + row totals (+ bubbles for votes)


def tally(prefix, page, top, bubbles):
    gx, gw, gh = 100.0, 150.0, 70.0
    cols = [gx + gw * i / 12 for i in range(13)]
    rws = [top + 5 + gh * i / 5 for i in range(6)]
    w(f'[[fields]]\nid = "{prefix}.tally"\npage = {page}\nkind = "tally_grid"\nlabel_id = "t"\n'
      f'label_en = "t"\nof = "{prefix}"\ncol_edges_mm = {[r(c) for c in cols]}\n'
      f'row_edges_mm = {[r(c) for c in rws]}\n')
    for k in range(5):
        y0 = rws[k] + 1.0
        rb = "[" + ", ".join(rect(256 + i * 11, y0, 9, 12) for i in range(2)) + "]"
        w(f'[[fields]]\nid = "{prefix}.row{k + 1}"\npage = {page}\nkind = "row_totals"\n'
          f'label_id = "r"\nlabel_en = "r"\nboxes = {rb}\nline_mm = 0.4\nof = "{prefix}"\n'
          f"row = {k + 1}\n")
    if bubbles:
        colsb = []
        for c in range(3):
            colsb.append("[" + ", ".join(f"[{r(330 + c * 17)}, {r(top + 30 + d * 9)}]"
                                         for d in range(10)) + "]")
        w(f'[[fields]]\nid = "{prefix}.bubbles"\npage = {page}\nkind = "bubbles"\nlabel_id = "b"\n'
          f'label_en = "b"\nof = "{prefix}"\ncolumns = [{", ".join(colsb)}]\nradius_mm = 3.0\n')


for n in (1, 2, 3):
    top = 140 + (n - 1) * 140
    digits(f"votes.{n}", 2, 330, top + 5, guide="dotted8")
    tally(f"votes.{n}", 2, top, True)
digits("valid", 3, 480, 140)
digits("invalid", 3, 480, 195)
tally("invalid", 3, 185, False)
digits("total", 3, 480, 270)
digits("date.day", 3, 330, 320, 2, "date")
digits("date.month", 3, 400, 320, 2, "date")
digits("date.year", 3, 460, 320, 4, "date")

RULES = [
    ("lp_sum", "hard", "$.lp == $.l + $.p", ["dpt", "b1", "b2", "b3", "b4", "disabled"]),
]
for rid, kind, chk, groups in RULES:
    for g in groups:
        w(f'[[rules]]\nid = "{g}.{rid}"\nkind = "{kind}"\ncheck = "{chk.replace("$", g)}"\n'
          'message_id = "-"\nmessage_en = "-"\n')
more = [
    ("b4_sum", "hard", "$ == b1.$ + b2.$ + b3.$", None),
    ("valid_sum", "hard", "valid == votes.1 + votes.2 + votes.3", None),
    ("total_sum", "hard", "total == valid + invalid", None),
    ("ballots_balance", "soft", "ballots.received == ballots.used + ballots.returned + ballots.unused", None),
    ("ballots_used", "soft", "ballots.used == total", None),
    ("b4_total", "soft", "b4.lp == total", None),
    ("votes_le_dpt", "soft", "total <= dpt.lp + b2.lp + b3.lp", None),
    ("b1_le_dpt", "soft", "b1.lp <= dpt.lp", None),
    ("disabled_le_b4", "soft", "disabled.lp <= b4.lp", None),
]
for rid, kind, chk, _ in more:
    if rid == "b4_sum":
        for s in ("l", "p", "lp"):
            w(f'[[rules]]\nid = "b4_sum_{s}"\nkind = "{kind}"\ncheck = "b4.{s} == b1.{s} + b2.{s} + b3.{s}"\n'
              'message_id = "-"\nmessage_en = "-"\n')
        continue
    w(f'[[rules]]\nid = "{rid}"\nkind = "{kind}"\ncheck = "{chk}"\nmessage_id = "-"\nmessage_en = "-"\n')
for n in ("votes.1", "votes.2", "votes.3", "invalid"):
    rid = f"{n}.rows_sum"
    chk = f"{n} == " + " + ".join(f"{n}.row{k}" for k in range(1, 6))
    w(f'[[rules]]\nid = "{rid}"\nkind = "hard"\ncheck = "{chk}"\nmessage_id = "-"\nmessage_en = "-"\n')
w('[[rules]]\nid = "count_max_300"\nkind = "hard"\ncheck = "$ <= 300"\n'
  'for_each = ["dpt.*", "b1.*", "b2.*", "b3.*", "b4.*", "ballots.*", "disabled.*", "votes.1", "votes.2", "votes.3", "valid", "invalid", "total"]\n'
  'message_id = "-"\nmessage_en = "-"\n')

open("testdata/templates/synth-fixture.toml", "w").write("\n".join(out))
