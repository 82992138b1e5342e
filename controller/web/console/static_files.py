"""The file system the console's and the API docs' static routes read: a name that cannot be a
file there (a NUL, a name longer than the system allows, a path through a file) is a file that
does not exist, so its answer is the 404 of any other unknown name. Litestar's local file system
raises those as `ValueError` or `OSError`, which it answers with a 500."""

import errno

from litestar.file_system import BaseLocalFileSystem
from litestar.types.composite_types import PathType
from litestar.types.file_types import FileInfo

# Errors of a name, not of the disk: the name names nothing.
_NAME_ERRNOS = frozenset({errno.ENAMETOOLONG, errno.ENOTDIR, errno.ELOOP, errno.EINVAL})


class StaticFileSystem(BaseLocalFileSystem):
    async def info(self, path: PathType, **kwargs: object) -> FileInfo:
        try:
            return await super().info(path, **kwargs)
        except ValueError as exc:  # `embedded null byte`
            raise FileNotFoundError(errno.ENOENT, "no such file") from exc
        except OSError as exc:
            if exc.errno in _NAME_ERRNOS:
                raise FileNotFoundError(errno.ENOENT, "no such file") from exc
            raise
