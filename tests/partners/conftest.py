"""The partners tests hash operators' passwords with a smaller Argon2id memory cost (8 MiB
instead of 64 MiB): the same code path, a fraction of the CPU on a shared test machine.
test_operators checks that the default profile is the strong one."""

import os

os.environ.setdefault("QUANLIAN_PASSWORD_HASH_MEMORY_KIB", "8192")
