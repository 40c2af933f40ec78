"""uuid-ossp for engines that do not ship it (no libuuid in the build): the same functions in SQL and PL/pgSQL.

Migrations everywhere start with ``CREATE EXTENSION "uuid-ossp"`` for ``uuid_generate_v4()``; Aurora ships it.
v3 and v5 give the same results as the C extension (v5 carries its own SHA-1, which PostgreSQL has no
built-in for); v4 is ``gen_random_uuid()``; v1 and v1mc are time-based with a random multicast node (v1 has
no MAC address to read from SQL). Written into the overlay's extension directory by ``allowed_overlay``.
"""

from __future__ import annotations

__all__ = ["CONTROL", "SCRIPT", "VERSION"]

VERSION = "1.1"

CONTROL = """# uuid-ossp extension, written by Borealis (the engine ships none)
comment = 'generate universally unique identifiers (UUIDs)'
default_version = '1.1'
relocatable = true
"""

SCRIPT = r"""\echo Use CREATE EXTENSION to load this file. \quit

CREATE FUNCTION uuid_nil() RETURNS uuid LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT '00000000-0000-0000-0000-000000000000'::uuid $$;
CREATE FUNCTION uuid_ns_dns() RETURNS uuid LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT '6ba7b810-9dad-11d1-80b4-00c04fd430c8'::uuid $$;
CREATE FUNCTION uuid_ns_url() RETURNS uuid LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT '6ba7b811-9dad-11d1-80b4-00c04fd430c8'::uuid $$;
CREATE FUNCTION uuid_ns_oid() RETURNS uuid LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT '6ba7b812-9dad-11d1-80b4-00c04fd430c8'::uuid $$;
CREATE FUNCTION uuid_ns_x500() RETURNS uuid LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT '6ba7b814-9dad-11d1-80b4-00c04fd430c8'::uuid $$;

CREATE FUNCTION uuid_generate_v4() RETURNS uuid LANGUAGE sql VOLATILE PARALLEL SAFE
AS $$ SELECT pg_catalog.gen_random_uuid() $$;

CREATE FUNCTION uuid_generate_v1mc() RETURNS uuid LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
  SELECT (lpad(to_hex(t & 4294967295), 8, '0') || '-' ||
          lpad(to_hex((t >> 32) & 65535), 4, '0') || '-' ||
          lpad(to_hex(((t >> 48) & 4095) | 4096), 4, '0') || '-' ||
          lpad(to_hex((floor(random() * 16384))::int | 32768), 4, '0') || '-' ||
          lpad(to_hex((floor(random() * 281474976710656))::bigint | 1099511627776), 12, '0'))::uuid
  FROM (SELECT (extract(epoch FROM clock_timestamp()) * 10000000)::bigint + 122192928000000000 AS t) s
$$;
CREATE FUNCTION uuid_generate_v1() RETURNS uuid LANGUAGE sql VOLATILE PARALLEL SAFE
AS $$ SELECT uuid_generate_v1mc() $$;

CREATE FUNCTION uuid_generate_v3(namespace uuid, name text) RETURNS uuid
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
  h bytea := decode(md5(uuid_send(namespace) || convert_to(name, 'UTF8')), 'hex');
BEGIN
  h := set_byte(h, 6, (get_byte(h, 6) & 15) | 48);
  h := set_byte(h, 8, (get_byte(h, 8) & 63) | 128);
  RETURN encode(h, 'hex')::uuid;
END $$;

CREATE FUNCTION uuid_generate_v5(namespace uuid, name text) RETURNS uuid
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
  -- SHA-1 (FIPS 180-4) of the namespace's 16 bytes and the name, which PostgreSQL has no built-in for.
  msg bytea := uuid_send(namespace) || convert_to(name, 'UTF8');
  bits bigint := length(uuid_send(namespace) || convert_to(name, 'UTF8')) * 8;
  m bigint := 4294967295;
  h0 bigint := 1732584193; h1 bigint := 4023233417; h2 bigint := 2562383102;
  h3 bigint := 271733878; h4 bigint := 3285377520;
  w bigint[]; a bigint; b bigint; c bigint; d bigint; e bigint; f bigint; k bigint; t bigint;
  o int; res bytea;
BEGIN
  msg := msg || decode('80', 'hex');
  WHILE length(msg) % 64 <> 56 LOOP
    msg := msg || decode('00', 'hex');
  END LOOP;
  msg := msg || int8send(bits);
  FOR blk IN 0 .. length(msg) / 64 - 1 LOOP
    w := array_fill(0::bigint, ARRAY[80]);
    FOR i IN 0 .. 15 LOOP
      o := blk * 64 + i * 4;
      w[i + 1] := (get_byte(msg, o)::bigint << 24) | (get_byte(msg, o + 1)::bigint << 16)
                | (get_byte(msg, o + 2)::bigint << 8) | get_byte(msg, o + 3)::bigint;
    END LOOP;
    FOR i IN 16 .. 79 LOOP
      t := w[i - 2] # w[i - 7] # w[i - 13] # w[i - 15];
      w[i + 1] := ((t << 1) | (t >> 31)) & m;
    END LOOP;
    a := h0; b := h1; c := h2; d := h3; e := h4;
    FOR i IN 0 .. 79 LOOP
      IF i < 20 THEN f := (b & c) | ((~b & m) & d); k := 1518500249;
      ELSIF i < 40 THEN f := b # c # d; k := 1859775393;
      ELSIF i < 60 THEN f := (b & c) | (b & d) | (c & d); k := 2400959708;
      ELSE f := b # c # d; k := 3395469782;
      END IF;
      t := ((((a << 5) | (a >> 27)) & m) + f + e + k + w[i + 1]) & m;
      e := d; d := c; c := ((b << 30) | (b >> 2)) & m; b := a; a := t;
    END LOOP;
    h0 := (h0 + a) & m; h1 := (h1 + b) & m; h2 := (h2 + c) & m; h3 := (h3 + d) & m; h4 := (h4 + e) & m;
  END LOOP;
  res := substring(int8send(h0) FROM 5) || substring(int8send(h1) FROM 5) || substring(int8send(h2) FROM 5)
      || substring(int8send(h3) FROM 5);
  res := set_byte(res, 6, (get_byte(res, 6) & 15) | 80);
  res := set_byte(res, 8, (get_byte(res, 8) & 63) | 128);
  RETURN encode(res, 'hex')::uuid;
END $$;
"""
