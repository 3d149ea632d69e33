"""What both test clusters share: `start()` and `stop()`, and use in a `with` block, where a
start that fails halfway stops whatever it had started already."""

from __future__ import annotations


class LocalCluster:
    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
