"""Training and validation patches for Lightning, from the data layer's patch sampler.

Training crops are drawn from (data seed, epoch, sample index) alone, so a resumed run sees exactly
the crops an uninterrupted one would; the module tells this data module the epoch at the start of
every epoch. Validation uses a fixed set of `optim.val_samples` crops without flips (the epoch
never changes for them), so validation MSE is comparable between epochs and across resumes.
Foreground-aware sampling (`optim.min_foreground_fraction`) applies to training crops only, so
validation keeps scoring what evaluation scores: any part of a volume.
"""

from __future__ import annotations

import lightning as L
from torch.utils.data import DataLoader

from sparsessp_bmz.data.dataset import SparsePatchDataset
from sparsessp_bmz.errors import UserInputError
from sparsessp_bmz.training.config import TrainConfig


class SparsePatchDataModule(L.LightningDataModule):
    """Train and val splits of the config's manifest as aligned sparse/dense patch pairs."""

    def __init__(self, config: TrainConfig) -> None:
        super().__init__()
        self.config = config
        self.train_set: SparsePatchDataset | None = None
        self.val_set: SparsePatchDataset | None = None

    def setup(self, stage: str) -> None:
        settings = self.config.data_settings
        spec = self.config.model
        if self.train_set is None:
            self.train_set = SparsePatchDataset.from_settings(
                settings,
                "train",
                patch=spec.patch,
                ratio=spec.ratio,
                min_foreground=self.config.optim.min_foreground_fraction,
            )
        if self.val_set is None:
            val_settings = settings.model_copy(
                update={"flips": False, "samples_per_epoch": self.config.optim.val_samples}
            )
            try:
                self.val_set = SparsePatchDataset.from_settings(
                    val_settings, "val", patch=spec.patch, ratio=spec.ratio
                )
            except UserInputError as err:
                raise UserInputError(
                    f"{err}: the validation split is empty; the best checkpoint needs validation "
                    f"images (use more cells, or raise data.val_fraction)"
                ) from err

    def set_epoch(self, epoch: int) -> None:
        """New training crops for `epoch` (workers are not persistent, so they see it)."""
        if self.train_set is not None:
            self.train_set.set_epoch(epoch)

    def _loader(self, dataset: SparsePatchDataset | None) -> DataLoader:
        assert dataset is not None, "setup() runs before the loaders are asked for"
        workers = self.config.trainer.num_workers
        return DataLoader(
            dataset,
            batch_size=self.config.optim.batch_size,
            shuffle=False,
            num_workers=workers,
            persistent_workers=False,
            pin_memory=False,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set)
