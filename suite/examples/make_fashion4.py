"""Write a small ImageFolder from the real Fashion-MNIST (Debian's dataset-fashion-mnist): four
classes as grey PNGs in OUT/train/<class>/ and OUT/test/<class>/, the layout a user's own images
would have. It is the data of the README's "Bring your own model and data" example.

    python suite/examples/make_fashion4.py [OUT] [--train N] [--test N]    (default OUT: suite/examples/fashion4)
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from PIL import Image  # noqa: E402

from suite.data import datasets as data  # noqa: E402

CLASSES = {0: "tshirt", 1: "trouser", 7: "sneaker", 9: "boot"}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", nargs="?", default=str(Path(__file__).parent / "fashion4"))
    p.add_argument("--train", type=int, default=1000, help="training images per class")
    p.add_argument("--test", type=int, default=250, help="test images per class")
    args = p.parse_args()
    fm = data.load("fashion-mnist")
    for split, part, n in (("train", fm.train, args.train), ("test", fm.test, args.test)):
        for label, name in CLASSES.items():
            folder = Path(args.out) / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for j, i in enumerate((part.y == label).nonzero().flatten()[:n].tolist()):
                Image.fromarray(part.x[i, 0].numpy(), "L").save(folder / f"{j:05d}.png")
    print(f"wrote {args.out}: {len(CLASSES)} classes, {args.train} train and {args.test} test images each")
    return 0


if __name__ == "__main__":
    sys.exit(main())
