"""The search space: per-block trims of one model, as specs to sample, mutate and cross.

A candidate is a resolved :class:`~trimbert.spec.TrimSpec` of the untrimmed model. Per block (original
numbering) it decides: keep the block or drop it (``drop_layers``, at most ``max_drop_layers``); its FFN
dropped, at full width or narrowed to one of ``widths`` (neurons chosen by importance, so widths nest);
each of its two LayerNorms kept or stripped (identity replacement; when ``layernorms`` is on); its
attention heads, all or one of the counts of ``heads`` (heads chosen by importance, so counts
nest; when ``heads`` is not empty); and, for the whole model, one attention normalizer of ``normalizers``. :meth:`SearchSpace.genes` and
:meth:`SearchSpace.spec` convert between a spec and its genes (one tuple per block) so that the
evolutionary search (:mod:`trimbert.search.evolve`) and the one-shot super-model
(:mod:`trimbert.search.estimator`) draw from the same space.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from trimbert.errors import TrimbertError
from trimbert.spec import SOFTMAX, TrimSpec, check_normalizer

DROPPED = 0  # an FFN gene: 0 = dropped, else the number of neurons kept
ALL_HEADS = -1  # a heads gene: -1 = every head, else the number of heads kept


@dataclass(frozen=True)
class Block:
    """One block's genes: present or not, FFN width (0 = dropped), LayerNorms stripped, heads kept."""

    present: bool = True
    ffn: int = -1  # -1: full width (resolved by the space)
    strip_attn: bool = False
    strip_ffn: bool = False
    heads: int = ALL_HEADS  # or the number of attention heads kept (the model's count: every head)


@dataclass(frozen=True)
class SearchSpace:
    """What may be trimmed in a model of ``num_layers`` blocks of ``intermediate_size`` FFN neurons.

    ``widths``: the narrowed FFN widths a block may take (besides full width and dropped), each
    ``1 <= width < intermediate_size``; ``normalizers``: the attention normalizers (``softmax`` first
    is the untrimmed one); ``max_drop_layers``: how many whole blocks may go; ``layernorms``: whether
    LayerNorms may be stripped; ``drop_ffn``: whether FFNs may be dropped; ``heads``: the head counts a
    block's attention may be pruned to (besides all of its ``num_attention_heads``), each
    ``1 <= count < num_attention_heads``; empty: heads are not searched.
    """

    num_layers: int
    intermediate_size: int
    widths: tuple[int, ...] = ()
    normalizers: tuple[str, ...] = (SOFTMAX,)
    max_drop_layers: int = 0
    layernorms: bool = True
    drop_ffn: bool = True
    num_attention_heads: int = 0  # the model's heads per block (needed with ``heads``)
    heads: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.num_layers < 1:
            raise TrimbertError("search space: the model has no blocks")
        for width in self.widths:
            if not 1 <= width < self.intermediate_size:
                raise TrimbertError(
                    f"--widths: {width} is not a narrower FFN width (1 <= width < {self.intermediate_size})"
                )
        if not self.normalizers:
            raise TrimbertError("--normalizers: give at least one attention normalizer")
        for name in self.normalizers:
            check_normalizer(name)
        if not 0 <= self.max_drop_layers < self.num_layers:
            raise TrimbertError(
                f"--max-drop-layers: {self.max_drop_layers} is not between 0 and {self.num_layers - 1}"
            )
        if self.heads and self.num_attention_heads < 2:
            raise TrimbertError("--heads-choices: the model's number of attention heads is needed (at least 2)")
        for count in self.heads:
            if not 1 <= count < self.num_attention_heads:
                raise TrimbertError(
                    f"--heads-choices: {count} is not a smaller head count (1 <= heads < {self.num_attention_heads})"
                )
        object.__setattr__(self, "widths", tuple(sorted(set(self.widths), reverse=True)))
        object.__setattr__(self, "heads", tuple(sorted(set(self.heads), reverse=True)))

    def ffn_choices(self) -> tuple[int, ...]:
        """Full width, the narrower widths, then dropped (0) when allowed."""
        return (self.intermediate_size, *self.widths, *((DROPPED,) if self.drop_ffn else ()))

    def head_choices(self) -> tuple[int, ...]:
        """Every head (:data:`ALL_HEADS`), then the smaller head counts (none when heads are not searched)."""
        return (ALL_HEADS, *self.heads)

    def fingerprint(self) -> dict[str, Any]:
        """The space as a dict for cache keys: without the head fields when heads are not searched, so
        a space's key is what it was before heads could be searched."""
        data = asdict(self)
        if not self.heads:
            del data["heads"], data["num_attention_heads"]
        return data

    # ----------------------------------------------------------------------------------------------
    # Genes <-> spec

    def spec(self, blocks: Sequence[Block], attention: str = SOFTMAX) -> TrimSpec:
        """The resolved spec of these genes (one :class:`Block` per original block)."""
        if len(blocks) != self.num_layers:
            raise TrimbertError(f"search space: {len(blocks)} block genes for a {self.num_layers}-block model")
        drop_layers, drop_ffn, widths, layernorm, heads = [], [], {}, [], {}
        for index, block in enumerate(blocks):
            if not block.present:
                drop_layers.append(index)
                continue
            width = self.intermediate_size if block.ffn < 0 else block.ffn
            if width == DROPPED:
                drop_ffn.append(index)
            elif width < self.intermediate_size:
                widths[index] = width
            if block.strip_attn:
                layernorm.append(f"{index}.attn")
            if block.strip_ffn and width != DROPPED:
                layernorm.append(f"{index}.ffn")
            if block.heads != ALL_HEADS and block.heads != self.num_attention_heads:
                heads[index] = block.heads
        return TrimSpec(
            drop_ffn=tuple(drop_ffn),
            attention=attention,
            layernorm=tuple(layernorm),
            drop_layers=tuple(drop_layers),
            ffn_width=widths,
            heads=heads,
        )

    def genes(self, spec: TrimSpec) -> tuple[list[Block], str]:
        """The genes of a spec of the untrimmed model (the inverse of :meth:`spec`)."""
        stripped = set(spec.layernorm)
        widths = spec.ffn_widths
        counts = spec.head_counts
        blocks = []
        for index in range(self.num_layers):
            if index in spec.drop_layers:
                blocks.append(Block(present=False))
                continue
            ffn = DROPPED if index in spec.drop_ffn else widths.get(index, self.intermediate_size)
            blocks.append(
                Block(True, ffn, f"{index}.attn" in stripped, f"{index}.ffn" in stripped, counts.get(index, ALL_HEADS))
            )
        return blocks, spec.attention

    def contains(self, spec: TrimSpec) -> bool:
        """Whether the search could produce ``spec``."""
        if spec.attention not in self.normalizers or spec.layernorm_replacement != "identity":
            return False
        if len(spec.drop_layers) > self.max_drop_layers or (spec.layernorm and not self.layernorms):
            return False
        if spec.drop_ffn and not self.drop_ffn:
            return False
        if not all(count in self.heads for _, count in spec.heads):
            return False
        return all(width in self.widths for _, width in spec.ffn_width)

    # ----------------------------------------------------------------------------------------------
    # Sampling and variation

    def random_block(self, rng: random.Random) -> Block:
        """A present block's genes drawn uniformly (heads drawn only when searched: a space without
        heads draws what it drew before heads could be searched)."""
        return Block(
            present=True,
            ffn=rng.choice(self.ffn_choices()),
            strip_attn=self.layernorms and rng.random() < 0.5,
            strip_ffn=self.layernorms and rng.random() < 0.5,
            heads=rng.choice(self.head_choices()) if self.heads else ALL_HEADS,
        )

    def random_spec(self, rng: random.Random) -> TrimSpec:
        """A spec drawn uniformly gene by gene (a random number of whole blocks dropped, up to the cap)."""
        blocks = [self.random_block(rng) for _ in range(self.num_layers)]
        for index in rng.sample(range(self.num_layers), rng.randint(0, self.max_drop_layers)):
            blocks[index] = Block(present=False)
        return self.spec(blocks, rng.choice(self.normalizers))

    def mutate(self, spec: TrimSpec, rng: random.Random, rate: float = 0.2) -> TrimSpec:
        """Redraw each gene with probability ``rate`` (dropping a block only within the cap)."""
        blocks, attention = self.genes(spec)
        for index, block in enumerate(blocks):
            if rng.random() < rate:
                blocks[index] = self.random_block(rng)
            elif rng.random() < rate / 2 and self.max_drop_layers:
                dropped = sum(not item.present for item in blocks)
                if block.present and dropped < self.max_drop_layers:
                    blocks[index] = Block(present=False)
                elif not block.present:
                    blocks[index] = self.random_block(rng)
        if rng.random() < rate:
            attention = rng.choice(self.normalizers)
        return self.spec(blocks, attention)

    def crossover(self, first: TrimSpec, second: TrimSpec, rng: random.Random) -> TrimSpec:
        """Each block's genes from one parent or the other; the normalizer from either."""
        blocks_a, attention_a = self.genes(first)
        blocks_b, attention_b = self.genes(second)
        blocks = [a if rng.random() < 0.5 else b for a, b in zip(blocks_a, blocks_b, strict=True)]
        while sum(not block.present for block in blocks) > self.max_drop_layers:
            gone = [index for index, block in enumerate(blocks) if not block.present]
            index = rng.choice(gone)
            blocks[index] = blocks_a[index] if blocks_a[index].present else blocks_b[index]
        return self.spec(blocks, rng.choice((attention_a, attention_b)))


def fixed_patterns(space: SearchSpace) -> dict[str, TrimSpec]:
    """The hand-made trims a search must beat, by name (only those inside ``space``): ``first:N``,
    ``last:N``, ``alternate`` FFN drops, every FFN narrowed to one width, every block pruned to one head
    count, and the last N blocks dropped."""
    layers = space.num_layers
    patterns: dict[str, TrimSpec] = {}
    if space.drop_ffn:
        for count in range(1, layers):
            patterns[f"drop-ffn first:{count}"] = TrimSpec(drop_ffn=tuple(range(count)))
            patterns[f"drop-ffn last:{count}"] = TrimSpec(drop_ffn=tuple(range(layers - count, layers)))
        patterns["drop-ffn alternate"] = TrimSpec(drop_ffn=tuple(range(1, layers, 2)))
    for width in space.widths:
        patterns[f"ffn-width {width}"] = TrimSpec(ffn_width={block: width for block in range(layers)})
    for count in space.heads:
        patterns[f"heads {count}"] = TrimSpec(heads=dict.fromkeys(range(layers), count))
    for count in range(1, space.max_drop_layers + 1):
        patterns[f"drop-layers last:{count}"] = TrimSpec(drop_layers=tuple(range(layers - count, layers)))
    return patterns
