"""The data side: from sources (archives, folders, URLs) to photos, labels and splits.

`sources` is the download params section and how a source may be shown; `fetch` gets one file
from a URL or path, hashed, with retries; `archives` unpacks a zip, tar or folder safely;
`download` fetches and unpacks every source; `layouts` reads a source's labels from how it is
laid out; `split` checks every photo and writes the manifest; `manifest` is the manifest's
schema and the label set; `images` is the one decode every stage shares; `input_pipeline` turns
manifest rows into tf.data batches; `near_duplicates` groups near-identical photos (kept in
one split); `parallel` maps a function over many items on every core; `pretrained` fetches the
ImageNet weights the zoo's architectures start from.
"""
