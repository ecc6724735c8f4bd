"""Raw: a model whose task edgepack does not know (a detector's heads, a segmenter, an embedding, ...), verified by
its outputs alone. Every output is compared with the source's by name: max |diff|, SNR in dB and cosine similarity
on real inputs of the data set; exact formats must stay within their atol, int8 files above an SNR floor
(`edgepack.toolkit.tasks.base.MIN_INT8_SNR_DB`). There is no quality figure: deploy picks on latency and size among the files
that keep that fidelity."""
from __future__ import annotations

from edgepack.toolkit.tasks.base import Task


class Raw(Task):
    name = "raw"
    description = "any model: every output verified against the source by name (max |diff|, SNR, cosine); no quality figure"


TASK = Raw
