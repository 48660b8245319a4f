"""T, Q, U HEALPix maps in FITS: which columns, which polarisation convention, which units.

Read and written through :func:`combine.image_io.read_healpix_table` /
:func:`combine.image_io.write_healpix_table`, so every other column (HITS, II_COV, QQ_COV, ...),
keyword, the ordering and the units go back out as they came in.

Columns
-------
The T, Q, U columns of one binary table are found by name (case-insensitive), the first
complete set of

* ``I_STOKES, Q_STOKES, U_STOKES`` (Planck's maps),
* ``TEMPERATURE, Q_POLARISATION, U_POLARISATION`` (``healpy.write_map`` of three maps),
* ``T, Q, U`` or ``I, Q, U``.

A table with part of a set (``I_STOKES`` without ``Q_STOKES``/``U_STOKES``: a temperature-only
Planck map) is refused, never filled with HITS or II_COV as Q. A table with none of these names
and at least three columns uses its first three as T, Q, U. T, Q, U spread over several HDUs are
not read (write them as the columns of one table).

Polarisation convention
-----------------------
``POLCCONV = 'COSMO'`` (or no POLCCONV: healpy's and Planck's convention) is used as is. For
``POLCCONV = 'IAU'`` the position angle runs the other way, :math:`U_{IAU} = -U_{COSMO}`: U is
negated on read, the fill works in healpy's (COSMO) convention, and U is negated back on write,
so the output keeps ``POLCCONV = 'IAU'`` and the file's own sign. Any other value is refused.

Units
-----
Each of the three columns' ``TUNITn`` converts it to μK (:func:`combine.image_io.unit_to_uk`);
T may have another unit than Q and U, but Q and U must share one (a file with Q in K_CMB and U in
μK is refused as mislabelled), and either all three columns have a unit or none has.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .errors import InputError
from .image_io import HealpixTable, read_healpix_table, unit_to_uk

#: Column-name sets recognised as T, Q, U, in order of preference (upper case).
STOKES_NAME_SETS = (
    ("I_STOKES", "Q_STOKES", "U_STOKES"),
    ("TEMPERATURE", "Q_POLARISATION", "U_POLARISATION"),
    ("T", "Q", "U"),
    ("I", "Q", "U"),
)

#: Names of the columns a T, Q, U map is written with when it has none of its own.
TQU_OUTPUT_NAMES = ("I_STOKES", "Q_STOKES", "U_STOKES")

FIELDS = ("T", "Q", "U")


def tqu_column_indices(table: HealpixTable, source: str) -> tuple[int, int, int]:
    """Indices of the T, Q, U columns of ``table`` (module docstring, "Columns")."""
    names = [str(n).strip().upper() for n in table.names]
    for name_set in STOKES_NAME_SETS:
        if all(n in names for n in name_set):
            return tuple(names.index(n) for n in name_set)
    listed = ", ".join(table.names)
    for name_set in STOKES_NAME_SETS[:2]:
        present = [n for n in name_set if n in names]
        if present:
            missing = [n for n in name_set if n not in names]
            raise InputError(f"{source}: --fields TQU: the map has {', '.join(present)} but no {', '.join(missing)} "
                             f"column (columns: {listed}); a T-only map is filled with --fields T")
    if len(names) < 3:
        raise InputError(f"{source}: --fields TQU needs T, Q and U columns; the map has {len(names)} "
                         f"({listed})")
    present = [n for n in ("T", "I", "Q", "U") if n in names]
    if present:
        raise InputError(f"{source}: --fields TQU: columns {listed} name only some of T, Q, U")
    return 0, 1, 2


def is_iau(table: HealpixTable, source: str) -> bool:
    """True for ``POLCCONV = 'IAU'``, False for COSMO or no POLCCONV; InputError otherwise."""
    header = table.header
    value = None if header is None or "POLCCONV" not in header else str(header["POLCCONV"]).strip().upper()
    if value in (None, "", "COSMO"):
        return False
    if value == "IAU":
        return True
    raise InputError(f"{source}: unknown POLCCONV {header['POLCCONV']!r} (expected COSMO or IAU)")


def column_factors_to_uk(table: HealpixTable, columns, source: str, unit_option=None):
    """Factors converting the T, Q, U columns to μK (module docstring, "Units"); None for all
    three when no column has a unit and ``unit_option`` (``--unit``) is None."""
    units = [table.units[c] for c in columns]
    option = None if unit_option is None else unit_to_uk(unit_option, "--unit")
    if all(u is None for u in units):
        return [option] * 3
    if any(u is None for u in units):
        given = [FIELDS[k] for k, u in enumerate(units) if u is not None]
        missing = [FIELDS[k] for k, u in enumerate(units) if u is None]
        raise InputError(f"{source}: TUNIT given for {', '.join(given)} but not for {', '.join(missing)}; "
                         "give every T, Q, U column a unit (or none)")
    factors = [unit_to_uk(u, f"{source}: TUNIT{c + 1} of column {table.names[c]}") for u, c in zip(units, columns)]
    if factors[1] != factors[2]:
        raise InputError(f"{source}: Q and U columns have different units ({units[1]!r}, {units[2]!r})")
    if option is not None:
        for k, (u, f) in enumerate(zip(units, factors)):
            if f != option:
                raise InputError(f"--unit {unit_option}: {source} says TUNIT{columns[k] + 1} = {u!r}")
    return factors


@dataclasses.dataclass
class TQUTable:
    """A HEALPix FITS table with its T, Q, U columns located (:func:`read_tqu_table`).

    ``columns`` are the indices of T, Q, U in ``table``; ``factors_to_uk`` their conversions to
    μK (None: no unit in the file); ``iau`` whether U is stored in the IAU convention.
    """

    table: HealpixTable
    columns: tuple
    factors_to_uk: list
    iau: bool

    @property
    def names(self) -> list:
        return [self.table.names[c] for c in self.columns]

    def raw(self, k: int) -> np.ndarray:
        """Column of field ``k`` (0 = T, 1 = Q, 2 = U) as stored."""
        return self.table.arrays[self.columns[k]]

    def to_uk(self, factors) -> np.ndarray:
        """(3, Npix) T, Q, U in μK and healpy's (COSMO) convention, float32 unless a column is
        float64 (hole pixels as stored: they are not read by the fills)."""
        arrays = [self.raw(k) for k in range(3)]
        dtype = np.float64 if any(a.dtype == np.float64 for a in arrays) else np.float32
        out = np.empty((3, arrays[0].size), dtype=dtype)
        for k, (a, f) in enumerate(zip(arrays, factors)):
            sign = -1.0 if (k == 2 and self.iau) else 1.0
            if f == 1.0 and sign == 1.0:
                out[k] = a
            else:
                with np.errstate(over="ignore", invalid="ignore"):  # UNSEEN hole pixels times 1e6
                    out[k] = a.astype(np.float64) * (f * sign)
        return out

    def set_holes(self, k: int, pixels, values_uk, factor: float) -> np.ndarray:
        """Write ``values_uk`` (μK, COSMO) into ``pixels`` of field ``k``'s column, in its unit and
        convention; the column becomes float32 if it was not floating. Returns the column."""
        c = self.columns[k]
        column = self.table.arrays[c]
        if not np.issubdtype(column.dtype, np.floating):
            column = self.table.arrays[c] = column.astype(np.float32)
        sign = -1.0 if (k == 2 and self.iau) else 1.0
        column[pixels] = np.asarray(values_uk, dtype=np.float64) * (sign / factor)
        return column


def read_tqu_table(path, unit_option=None) -> TQUTable:
    """Read a HEALPix FITS map and locate its T, Q, U columns, units and convention."""
    table = read_healpix_table(path)
    columns = tqu_column_indices(table, str(path))
    iau = is_iau(table, str(path))
    factors = column_factors_to_uk(table, columns, str(path), unit_option)
    return TQUTable(table=table, columns=columns, factors_to_uk=factors, iau=iau)


__all__ = ["STOKES_NAME_SETS", "TQU_OUTPUT_NAMES", "TQUTable", "read_tqu_table", "tqu_column_indices", "is_iau",
           "column_factors_to_uk"]
