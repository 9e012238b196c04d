"""The data side: from sources (archives, folders, URLs) to photos, labels and splits.

`download` fetches and unpacks sources; `layouts` reads a source's labels from how it is laid
out; `split` checks every photo and writes the manifest; `manifest` is the manifest's schema
and the label set; `images` is the one decode every stage shares; `pipeline` turns manifest
rows into tf.data batches.
"""
