"""charnn inspect (charnn/inspect/): the recorded states equal the fused model, text properties,
--find, gate saturation, gradient flow against theory, the dumps, the HTML page in a real
browser, and the commands on char/byte/word/bpe models with LSTM/GRU/RNN cells."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from charnn.config import ModelConfig
from charnn.inspect import dump
from charnn.inspect.activations import Activations, record
from charnn.inspect.find import correlate, find_units
from charnn.inspect.gradients import measure
from charnn.inspect.properties import text_properties, token_properties
from charnn.inspect.saturation import saturation
from charnn.inspect.text import char_index, pieces
from charnn.model import RNNLM
from charnn.tokenizers.char import CharTokenizer
from tests.conftest import cli

# prose, code and a quote: every text property varies in it
TEXT = ('ROMEO: "Is the day so young?" (said he, [twice])\n'
        'def f(x):  # a comment\n    return {"a": (x + 1)}\n'
        "int y = g(2); /* block */ // line\n")


def _model(cell: str, seed: int = 0, **extra) -> RNNLM:
    torch.manual_seed(seed)
    cfg = ModelConfig(vocab_size=len(set(TEXT)), cell=cell, **{"layers": 2, "hidden": 12, "embed_dim": 6, **extra})
    model = RNNLM(cfg).eval()
    with torch.no_grad():   # non-zero biases everywhere, so a misplaced bias shows
        for name, p in model.named_parameters():
            if "bias" in name:
                p.uniform_(-0.5, 0.5)
    return model


# ----------------------------------------------------------------------------------------------
# recording


@pytest.mark.parametrize("cell,extra", [("lstm", {}), ("gru", {}), ("rnn", {}), ("lstm", {"input": "onehot"}),
                                        ("gru", {"tie_weights": True, "layers": 3})])
def test_recorded_states_equal_the_fused_forward(cell, extra):
    model = _model(cell, **extra)
    tok = CharTokenizer(sorted(set(TEXT)))
    ids = tok.encode(TEXT)
    acts = record(model, tok, ids)
    with torch.no_grad():
        logits, (h_n, *c_n) = model(torch.as_tensor(ids)[None])               # (1, T, V), (L, 1, H)
        top, _ = model.rnn(model.inputs(torch.as_tensor(ids)[None]))           # (1, T, H)
    L, T, H = acts.states["h"].shape
    assert (L, T, H) == (model.cfg.layers, len(ids), model.cfg.hidden)
    assert np.abs(acts.states["h"][-1] - top[0].numpy()).max() < 1e-5          # every step, top layer
    assert np.abs(acts.states["h"][:, -1] - h_n[:, 0].numpy()).max() < 1e-5    # every layer, last step
    if cell == "lstm":
        assert np.abs(acts.states["c"][:, -1] - c_n[0][:, 0].numpy()).max() < 1e-5
    want = {"lstm": {"h", "c", "i", "f", "g", "o"}, "gru": {"h", "r", "z", "n"}, "rnn": {"h"}}[cell]
    assert set(acts.kinds) == want
    logp = logits[0].log_softmax(-1)
    loss = -logp[:-1].gather(1, torch.as_tensor(ids[1:])[:, None])[:, 0]
    assert math.isnan(acts.loss[0]) and np.allclose(acts.loss[1:], loss.numpy(), atol=1e-5)
    assert np.array_equal(acts.top_ids[:, 0], logp.argmax(-1).numpy())
    assert np.allclose(acts.top_probs[:, 0], logp.exp().max(-1).values.numpy(), atol=1e-5)
    assert acts.text == TEXT


def test_sigmoid_gates_lie_in_0_1_and_lstm_cell_follows_its_gates():
    acts = record(_model("lstm"), CharTokenizer(sorted(set(TEXT))), CharTokenizer(sorted(set(TEXT))).encode(TEXT))
    s = acts.states
    for g in "ifo":
        assert 0 <= s[g].min() and s[g].max() <= 1
    c_prev = np.concatenate([np.zeros_like(s["c"][:, :1]), s["c"][:, :-1]], axis=1)
    assert np.allclose(s["c"], s["f"] * c_prev + s["i"] * s["g"], atol=1e-5)    # c = f c + i g
    assert np.allclose(s["h"], s["o"] * np.tanh(s["c"]), atol=1e-5)              # h = o tanh c


# ----------------------------------------------------------------------------------------------
# text properties, --find, saturation


def test_text_properties_on_hand_made_strings():
    text = 'a "b" (c[d]) XY # e\nAB/* f */g'
    got = {k: "".join(str(int(v)) for v in vals) for k, vals in text_properties(text).items()}
    #          a "b" (c[d]) XY # e\nAB/* f */g
    assert got["in_quotes"] == "0011000000000000000000000000000"[:len(text)]
    assert got["bracket_depth"] == "000000112210000000000000000000"[:len(text)]
    assert got["in_word"] == "100100010100011000101100010001"[:len(text)]
    assert got["after_newline"] == "000000000000000000010000000000"[:len(text)]
    assert got["uppercase_run"] == "000000000000012000001200000000"[:len(text)]
    assert got["in_comment"] == "000000000000000011100001111100"[:len(text)]
    assert text_properties(text)["line_position"].tolist()[18:22] == [19, 0, 1, 2]
    # curly quotes open and close; a '#' inside quotes starts no comment
    props = text_properties('x “a” "#b" c')
    assert props["in_quotes"].tolist() == [0, 0, 1, 1, 0, 0, 1, 1, 1, 0, 0, 0]
    assert props["in_comment"].max() == 0
    assert text_properties("don't")["in_word"].tolist() == [1, 1, 1, 1, 1]


def test_token_properties_are_read_at_each_tokens_character():
    from charnn.tokenizers.byte import ByteTokenizer
    from charnn.tokenizers.word import WordTokenizer

    byte = ByteTokenizer()
    ids = byte.encode('é"x')                          # é is two bytes: the first shows no character yet
    p = pieces(byte, ids)
    assert p == ["", "é", '"', "x"] and char_index(p).tolist() == [0, 0, 1, 2]
    word = WordTokenizer.fit(lambda: ["the (cat) sat"])
    p = pieces(word, word.encode("the (cat) sat"))
    text = "".join(p)
    props = token_properties(text_properties(text), char_index(p))
    assert p == ["the", " (", "cat", ")", " sat"]
    assert props["bracket_depth"].tolist() == [0, 1, 1, 0, 0]
    assert props["in_word"].tolist() == [1, 0, 1, 0, 1]


def _acts(states: dict[str, np.ndarray], cell: str = "lstm") -> Activations:
    T = next(iter(states.values())).shape[1]
    return Activations(cell, np.zeros(T, np.int64), ["x"] * T, states, np.zeros(T, np.float32),
                       np.zeros((T, 1), np.int64), np.ones((T, 1), np.float32))


def test_find_finds_a_planted_unit():
    rng = np.random.default_rng(0)
    depth = text_properties(TEXT * 3)["bracket_depth"]                           # (T,)
    quotes = text_properties(TEXT * 3)["in_quotes"]
    T = len(depth)
    h = rng.normal(size=(2, T, 16)).astype(np.float32)
    c = rng.normal(size=(2, T, 16)).astype(np.float32)
    c[1, :, 7] = 0.3 * depth + 0.05 * rng.normal(size=T)                         # planted: layer 1, c, unit 7
    h[0, :, 3] = -quotes + 0.05 * rng.normal(size=T)                            # planted, falling: layer 0, h, 3
    report = {f["property"]: f for f in find_units(_acts({"h": h, "c": c}), {"bracket_depth": depth,
                                                   "in_quotes": quotes, "none": np.zeros(T)}, top=2)}
    best = report["bracket_depth"]["units"][0]
    assert (best["kind"], best["layer"], best["unit"]) == ("c", 1, 7) and best["r"] > 0.95
    best = report["in_quotes"]["units"][0]
    assert (best["kind"], best["layer"], best["unit"]) == ("h", 0, 3) and best["r"] < -0.95
    assert len(report["in_quotes"]["units"]) == 2 and abs(report["in_quotes"]["units"][1]["r"]) < 0.3
    assert report["none"] == {"property": "none", "varies": False, "units": []}
    # correlate agrees with numpy's Pearson r, and a constant unit has r = 0
    v = np.stack([depth + rng.normal(size=T), np.ones(T)], axis=1)
    assert correlate(v, quotes)[0] == pytest.approx(np.corrcoef(v[:, 0], quotes)[0, 1], abs=1e-5)
    assert correlate(v, quotes)[1] == 0


def test_saturation_shares_on_a_constructed_case():
    T = 10
    f = np.full((1, T, 2), 0.5, np.float32)
    f[0, :3, 0] = 0.05            # unit 0: left-saturated 3/10 of the time
    f[0, 3:, 0] = 0.95            # ... and right-saturated 7/10
    f[0, :1, 1] = 0.99            # unit 1: right 1/10
    gates = {g: np.full((1, T, 2), 0.5, np.float32) for g in "igo"}
    sat = saturation(_acts({"h": np.zeros((1, T, 2), np.float32), "f": f, **gates}))
    assert [(e["layer"], e["gate"]) for e in sat] == [(0, "i"), (0, "f"), (0, "o")]      # g is tanh: left out
    e = sat[1]
    assert e["units_left"] == pytest.approx([0.3, 0.0]) and e["units_right"] == pytest.approx([0.7, 0.1])
    assert e["left"] == pytest.approx(0.15) and e["right"] == pytest.approx(0.4)
    assert sat[0]["left"] == sat[0]["right"] == 0
    assert saturation(_acts({"h": np.zeros((1, T, 2), np.float32)}, cell="rnn")) == []


# ----------------------------------------------------------------------------------------------
# gradient flow


@pytest.mark.parametrize("rho", [0.8, 1.25])
def test_gradient_decay_and_growth_follow_the_spectral_radius(rho):
    """A tanh RNN whose state stays at 0 (no input, no bias: tanh' = 1 exactly) and whose
    recurrent matrix is rho times an orthogonal one: |d loss_t / d h_(t-k)| = rho^k |d loss_t / d h_t|,
    so the measured curve relative to k = 1 must be rho^(k-1), below 1 decaying, above 1 growing."""
    torch.manual_seed(1)
    model = RNNLM(ModelConfig(vocab_size=7, cell="rnn", layers=1, hidden=16, embed_dim=4)).eval()
    with torch.no_grad():
        q, _ = torch.linalg.qr(torch.randn(16, 16))
        model.rnn.weight_hh_l0.copy_(rho * q)
        for name in ("weight_ih_l0", "bias_ih_l0", "bias_hh_l0"):
            getattr(model.rnn, name).zero_()
        model.head.weight.normal_()
    flow = measure(model, np.arange(60) % 7, lag=30, positions=6)
    want = rho ** (flow.lags - 1.0)
    assert np.allclose(flow.relative[0], want, rtol=1e-4)
    assert flow.sigma[0]["all"] == pytest.approx(rho, rel=1e-5)
    k = int(np.ceil(math.log(1e-3) / math.log(rho))) + 1 if rho < 1 else None
    assert flow.falls_below() == [k if k is not None and k <= 30 else None]


def test_gradient_through_a_saturating_tanh_is_smaller_than_its_linear_bound():
    torch.manual_seed(2)
    model = RNNLM(ModelConfig(vocab_size=7, cell="rnn", layers=1, hidden=16, embed_dim=4)).eval()
    with torch.no_grad():
        q, _ = torch.linalg.qr(torch.randn(16, 16))
        model.rnn.weight_hh_l0.copy_(1.1 * q)
        model.rnn.weight_ih_l0.normal_(std=3.0)                  # big inputs: units near +-1, tanh' small
    flow = measure(model, np.arange(60) % 7, lag=20, positions=6)
    assert np.all(flow.relative[0][1:] < 1.1 ** (flow.lags[1:] - 1.0))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_gradient_measure_on_gated_cells(cell):
    model = _model(cell)
    ids = CharTokenizer(sorted(set(TEXT))).encode(TEXT)
    flow = measure(model, ids, lag=20, positions=5)
    assert flow.norms.shape == (2, 20) and np.all(flow.norms >= 0) and flow.norms[:, 0].min() > 0
    assert flow.mean_gate is not None and all(0 < g < 1 for g in flow.mean_gate)
    assert (flow.cell_norms is not None) == (cell == "lstm")
    assert set(flow.sigma[0]) == {"layer", "all", *("ifgo" if cell == "lstm" else "rzn")}
    # the top layer at k = 1, by autograd on the fused model split at t-1 (for the top layer no
    # other path leads from h_(t-1) to the loss at t, so the split loses nothing)
    one = measure(model, ids, lag=20, positions=1)
    t = one.positions[0]
    x = model.inputs(torch.as_tensor(ids[:t + 1])[None]).detach()              # (1, t+1, E)
    with torch.no_grad():
        _, state = model.rnn(x[:, :t])                                          # after token t-1
    h = (state[0] if cell == "lstm" else state).clone().requires_grad_(True)    # (L, 1, H)
    out, _ = model.rnn(x[:, t:], (h, state[1]) if cell == "lstm" else h)
    loss = torch.nn.functional.cross_entropy(model.head(out[:, -1]), torch.as_tensor(ids[t + 1:t + 2]))
    (g,) = torch.autograd.grad(loss, h)
    assert one.norms[-1, 0] == pytest.approx(g[-1].norm().item(), rel=1e-4)


# ----------------------------------------------------------------------------------------------
# dumps


def test_npy_and_jsonl_round_trip(tmp_path):
    tok = CharTokenizer(sorted(set(TEXT)))
    acts = record(_model("gru"), tok, tok.encode(TEXT), meta={"run": "x"})
    files = dump.save_npy(acts, tmp_path / "arrays")
    assert {p.name for p in files} == {"tokens.json", "ids.npy", "loss.npy", "top_ids.npy", "top_probs.npy",
                                       "state_h.npy", "gate_r.npy", "gate_z.npy", "gate_n.npy"}
    back = dump.load_npy(tmp_path / "arrays")
    lines = list(dump.jsonl_lines(acts))
    again = dump.read_jsonl(lines)
    for other, tol in ((back, 0), (again, 1e-5)):
        assert other.cell == "gru" and other.pieces == acts.pieces and np.array_equal(other.ids, acts.ids)
        for k in acts.states:
            assert np.abs(other.states[k] - acts.states[k]).max() <= tol
        assert np.allclose(other.loss, acts.loss, atol=tol + 1e-7, equal_nan=True)
        assert np.array_equal(other.top_ids, acts.top_ids)
    assert back.meta == {"run": "x"}
    row = json.loads(lines[3])
    assert row["t"] == 3 and row["token"] == TEXT[3] and len(row["h"]) == 2 and len(row["h"][0]) == 12
    assert json.loads(lines[0])["loss"] is None                  # strict JSON: no NaN


# ----------------------------------------------------------------------------------------------
# the commands, on tiny trained runs of every tokenizer and cell

CORPUS = (TEXT + "The cat (the old one) sat on the mat. \"Quiet!\" said the DOG.\n") * 30
RUNS = {  # name: train flags
    "char-lstm": ["--cell", "lstm"],
    "byte-gru": ["--cell", "gru", "--tokenizer", "byte"],
    "word-rnn": ["--cell", "rnn", "--tokenizer", "word"],
    "bpe-lstm": ["--cell", "lstm", "--tokenizer", "bpe", "--vocab-size", "340"],
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """The RUNS, trained for 20 steps each in one folder (the tests chdir there)."""
    root = tmp_path_factory.mktemp("inspect-runs")
    (root / "corpus.txt").write_text(CORPUS, encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.setenv("CHARNN_CACHE", str(root / ".cache"))
        torch.set_num_threads(1)
        for name, flags in RUNS.items():
            r = cli("train", "corpus.txt", "--out", name, "--hidden", "16", "--layers", "2", "--embed-dim", "8",
                    "--seq-len", "16", "--batch-size", "4", "--max-steps", "20", "--eval-every", "10",
                    "--quiet", *flags)
            assert r.exit_code == 0, r.stderr
    return root


@pytest.fixture
def in_runs(runs, monkeypatch) -> Path:
    monkeypatch.chdir(runs)
    return runs


@pytest.mark.parametrize("name", list(RUNS))
def test_activations_command_on_every_tokenizer_and_cell(in_runs, name):
    r = cli("inspect", "activations", name, "--file", "corpus.txt", "--length", "300", "--find", "--json")
    assert r.exit_code == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["tokens"] > 10 and s["layers"] == 2 and s["hidden"] == 16
    assert s["cell"] == name.split("-")[1] and math.isfinite(s["mean_loss"])
    assert {f["property"] for f in s["units"]} >= {"in_quotes", "bracket_depth", "in_comment"}
    assert len(s["saturation"]) == {"lstm": 6, "gru": 4, "rnn": 0}[s["cell"]]
    # the text report, and the default text: the start of the run's own validation part
    r = cli("inspect", "activations", name, "--find", "--length", "200")
    assert r.exit_code == 0, r.stderr
    assert "validation part" in r.stdout and "units that track the text" in r.stdout
    assert ("gate saturation" in r.stdout) == (s["cell"] != "rnn")


def test_activations_page_dumps_and_terminal_view(in_runs, tmp_path, monkeypatch):
    page, arrays = tmp_path / "page.html", tmp_path / "arrays"
    r = cli("inspect", "activations", "char-lstm", TEXT, "--html", str(page), "--format", "npy", "--out", str(arrays),
            "--unit", "1:5", "--kind", "c", "--show")
    assert r.exit_code == 0, r.stderr
    assert f"wrote {page}" in r.stderr
    assert str(arrays / "state_c.npy") in r.stdout.splitlines()
    assert "layer 1, c, unit 5" in r.stdout
    html = page.read_text(encoding="utf-8")
    assert "http://" not in html and "https://" not in html and "<script src" not in html
    assert '"start":{"kind":"c","layer":1,"unit":5}' in html
    acts = dump.load_npy(arrays)
    assert acts.text == TEXT and acts.states["c"].shape == (2, len(TEXT), 16)
    r = cli("inspect", "activations", "char-lstm", TEXT, "--format", "jsonl")
    assert r.exit_code == 0, r.stderr
    again = dump.read_jsonl(r.stdout.splitlines())
    assert np.abs(again.states["f"] - acts.states["f"]).max() < 1e-5
    monkeypatch.setenv("FORCE_COLOR", "1")                       # Rich colours a captured stdout too
    monkeypatch.setenv("COLORTERM", "truecolor")
    r = cli("inspect", "activations", "char-lstm", "-", "--show", "--unit", "3", input="ab(c)\n")
    assert r.exit_code == 0, r.stderr
    assert "\x1b[48;2;" in r.stdout                              # a background colour per token
    assert "ab(c)↵" in re.sub(r"\x1b\[[0-9;]*m", "", r.stdout)


def test_gradients_command_with_compare_plot_and_json(in_runs, tmp_path):
    chart = tmp_path / "g.png"
    r = cli("inspect", "gradients", "char-lstm", "--file", "corpus.txt", "--lag", "30", "--positions", "4",
            "--compare", "byte-gru", "--compare", "word-rnn", "--plot", str(chart), "--json")
    assert r.exit_code == 0, r.stderr
    res = json.loads(r.stdout)
    assert [x["cell"] for x in res["runs"]] == ["lstm", "gru", "rnn"]
    for x in res["runs"]:
        assert len(x["relative"]) == 2 and len(x["relative"][0]) == 30 and x["relative"][0][0] == 1.0
    assert res["runs"][0]["mean_gate"] and res["runs"][2]["mean_gate"] is None
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = cli("inspect", "gradients", "bpe-lstm", "--lag", "20", "--positions", "3")
    assert r.exit_code == 0, r.stderr
    assert "sigma_max" in r.stdout and "relative to k = 1 (log scale)" in r.stdout


@pytest.mark.parametrize("args,needle", [
    (["activations", "char-lstm", "héllo"], "the text has 1 character(s) not in the model's vocabulary: 'é'"),
    (["activations", "char-lstm", ""], "the text is empty"),
    (["gradients", "char-lstm", "the cat", "--lag", "50"], "--lag 50 needs a text of at least 52 tokens"),
    (["gradients", "char-lstm", "the cat", "--lag", "0"], "--lag must be at least 1"),
    (["activations", "char-lstm", "abc", "--unit", "5:0"], "--unit 5:0: the model has layers 0..1"),
    (["activations", "word-rnn", "abc", "--kind", "c"], "--kind 'c': this RNN has h, loss"),
    (["activations", "char-lstm", "abc", "--format", "npy"], "--format npy writes a folder"),
    (["activations", "char-lstm", "abc", "--format", "csv"], "--format must be npy or jsonl"),
    (["activations", "char-lstm", "abc", "--plot", "x.gif"], "x.gif: a chart is written as .png, .svg, .pdf"),
    (["activations", "word-rnn", "abc", "--plot", "x.png"], "a plain RNN has no gates"),
    (["activations", "char-lstm", "abc", "--file", "corpus.txt"], "not both"),
])
def test_bad_input_is_one_line_error(in_runs, args, needle):
    r = cli("inspect", *args)
    assert r.exit_code != 0
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1 and needle in r.stderr, r.stderr


def test_a_missing_matplotlib_says_how_to_install_it(in_runs, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)          # import matplotlib -> ImportError
    r = cli("info", "char-lstm", "--plot", "loss.png")
    assert r.exit_code == 1 and "pip install 'charnn[plot]'" in r.stderr and r.stdout == ""


# ----------------------------------------------------------------------------------------------
# the page in a real browser


def test_the_page_works_in_a_headless_browser(in_runs, tmp_path, browser):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.support.ui import Select

    page, arrays = tmp_path / "page.html", tmp_path / "arrays"
    r = cli("inspect", "activations", "char-lstm", TEXT, "--find", "--html", str(page), "--format", "npy",
            "--out", str(arrays))
    assert r.exit_code == 0, r.stderr
    acts = dump.load_npy(arrays)
    browser.get(page.as_uri())
    assert browser.find_element("tag name", "body").get_attribute("data-ready") == "1"
    spans = browser.find_elements("css selector", "#text .tok")
    assert len(spans) == len(acts.ids)
    each = "return [...document.querySelectorAll('#text .tok')].map(s => s.{})"
    assert "".join(browser.execute_script(each.format("textContent"))) == TEXT.replace("\n", "↵\n")

    def colours() -> list[str]:
        return browser.execute_script(each.format("style.backgroundColor"))

    # the page's values are the recorded ones (to the 1/255 of their range it stores)
    Select(browser.find_element("id", "kind")).select_by_value("h")
    Select(browser.find_element("id", "layer")).select_by_value("1")
    browser.execute_script("document.getElementById('unit').value = 4; document.getElementById('unit')"
                           ".dispatchEvent(new Event('change'))")
    shown = browser.execute_script("return [...Array(D.tokens).keys()].map(t => unitValue('h', 1, 4, t))")
    span = acts.states["h"][1].max() - acts.states["h"][1].min()
    assert np.abs(np.array(shown) - acts.states["h"][1, :, 4]).max() <= span / 255
    before = colours()
    browser.find_element("id", "next").click()                    # unit 5: other colours
    assert browser.find_element("id", "unit").get_attribute("value") == "5"
    assert colours() != before
    Select(browser.find_element("id", "kind")).select_by_value("f")
    gate_colours = colours()
    assert gate_colours != before and all(c.startswith("rgb(") for c in gate_colours)
    # pointing at a character shows its loss and the model's top guesses
    ActionChains(browser).move_to_element(spans[10]).perform()
    info = browser.find_element("id", "info").text
    assert f"token 10 of {len(acts.ids)}" in info
    assert float(browser.find_element("css selector", "#info .loss").text) == pytest.approx(acts.loss[10], abs=0.006)
    rows = browser.find_elements("css selector", "#info table.guesses tr")
    assert len(rows) == acts.top_ids.shape[1]
    first = float(rows[0].find_element("css selector", "td.p").text.rstrip("%"))
    assert first == pytest.approx(100 * acts.top_probs[10, 0], abs=0.06)
    # a found unit's button jumps the picker to it
    button = browser.find_elements("css selector", "#found button")[0]
    button.click()
    assert browser.find_element("id", "unit").get_attribute("value") == button.get_attribute("data-unit")
    assert browser.find_element("id", "kind").get_attribute("value") == button.get_attribute("data-kind")
    assert "cur" in button.get_attribute("class")
    # a byte model: a 4-byte character shows whole on its last byte (not as broken halves)
    r = cli("inspect", "activations", "byte-gru", "a🙂b", "--html", str(page))
    assert r.exit_code == 0, r.stderr
    browser.get(page.as_uri())
    assert browser.execute_script(each.format("textContent")) == ["a", "", "", "", "🙂", "b"]


# ----------------------------------------------------------------------------------------------
# docs


def test_docs_name_every_inspect_option():
    from typer.main import get_command

    from charnn.cli import app

    doc = (Path(__file__).resolve().parents[1] / "docs" / "inspect.md").read_text(encoding="utf-8")
    group = get_command(app)
    commands = [group.commands["inspect"].commands["activations"], group.commands["inspect"].commands["gradients"],
                group.commands["info"]]
    for cmd in commands:
        for param in cmd.params:
            for opt in (o for o in param.opts if o.startswith("--") and o != "--help"):
                assert re.search(rf"`{re.escape(opt)}\b", doc), f"{cmd.name} {opt} is not in docs/inspect.md"


def test_pictures_script_runs_at_tiny_scale(in_runs, tmp_path, monkeypatch):
    """benchmarks/inspect_pictures.py makes the docs' pictures from run folders (run in this
    process, as its commands are: a second interpreter would import torch again)."""
    import importlib.util

    from tests.browser import find_browser
    from tests.conftest import REPO

    if None in find_browser():
        pytest.skip("no headless browser here: apt-get install chromium chromium-driver")
    spec = importlib.util.spec_from_file_location("inspect_pictures", REPO / "benchmarks" / "inspect_pictures.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "pictures"
    monkeypatch.setattr("sys.argv", [
        "inspect_pictures.py", "--out", str(out), "--page-run", "char-lstm", "--text-file", "corpus.txt",
        "--length", "400", "--gradient-runs", "char-lstm", "byte-gru", "word-rnn", "--lag", "20",
        "--positions", "3", "--loss-runs", "char-lstm", "byte-gru"])
    script.main()
    for name in ("inspect_page.png", "inspect_gradients.png", "info_loss.png", "saturation.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG", name
    assert "units that track the text" in (out / "find_units.txt").read_text()
    assert "sigma_max" in (out / "gradients.txt").read_text()
    assert (out / "inspect_page.html").stat().st_size > 0
