"""Looking inside a trained network: what its units, gates and gradients do on a text.

    cells        the LSTM / GRU / RNN step written out, so every gate can be seen (and differentiated)
    text         the text to look at (given, or the run's own validation text) and its tokens' pieces
    activations  one pass over a text, recording states, gates, losses and top guesses per token
    properties   simple properties of text computed from the characters (quotes, brackets, ...)
    find         which units track those properties (correlation)
    saturation   how often each gate sits near 0 or 1
    gradients    how far back the gradient reaches: |d loss_t / d h_(t-k)| against k
    dump         the recorded arrays as .npy files or JSON lines, and back
    page         the self-contained HTML page (template in page_template)
    curves       training and validation loss curves from a run's metrics.jsonl
    plots        matplotlib charts (imported only when a picture is asked for)

Nothing here imports the command-line layer; charnn.commands.inspect and charnn.commands.info
render what these modules compute.
"""
