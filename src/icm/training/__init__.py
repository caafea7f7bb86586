"""What every trainer shares (learned codec, restorer, adapters): the loop, its schedules,
resumable checkpoints, and the photos training reads. A trainer keeps only its model, its
batches and its loss."""

from icm.training.checkpoints import load_checkpoint, save_checkpoint
from icm.training.loop import Outcome, Progress, Settings, Task, TrainedRun, resume, run
from icm.training.photos import load_photos, to_tensor
from icm.training.schedule import Schedule

__all__ = [
    "Outcome",
    "Progress",
    "Schedule",
    "Settings",
    "Task",
    "TrainedRun",
    "load_checkpoint",
    "load_photos",
    "resume",
    "run",
    "save_checkpoint",
    "to_tensor",
]
