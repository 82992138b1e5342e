CREATE OR REPLACE FUNCTION public.result_pack_decode(line bytea, n integer)
 RETURNS integer[]
 LANGUAGE plpgsql
 IMMUTABLE PARALLEL SAFE STRICT
AS $function$
DECLARE
    w integer := get_byte(line, 0) & 7;
    apart boolean := get_byte(line, 0) >= 8;
    base bigint := (get_byte(line, 1) # 128)::bigint * 16777216 - 2147483648
        + get_byte(line, 2) * 65536 + get_byte(line, 3) * 256 + get_byte(line, 4);
    vals integer[] := array_fill(base::integer, ARRAY[n]);
    o integer := 5;
    first integer := 1;
BEGIN
    IF apart THEN
        vals[1] := (get_byte(line, 5) # 128)::bigint * 16777216 - 2147483648
            + get_byte(line, 6) * 65536 + get_byte(line, 7) * 256 + get_byte(line, 8);
        o := 9;
        first := 2;
    END IF;
    CASE w
    WHEN 0 THEN
        NULL;
    WHEN 1 THEN
        FOR i IN first .. n LOOP
            vals[i] := base + get_byte(line, o);
            o := o + 1;
        END LOOP;
    WHEN 2 THEN
        FOR i IN first .. n LOOP
            vals[i] := base + get_byte(line, o) * 256 + get_byte(line, o + 1);
            o := o + 2;
        END LOOP;
    WHEN 3 THEN
        FOR i IN first .. n LOOP
            vals[i] := base + get_byte(line, o) * 65536 + get_byte(line, o + 1) * 256
                + get_byte(line, o + 2);
            o := o + 3;
        END LOOP;
    ELSE
        FOR i IN first .. n LOOP
            vals[i] := base + get_byte(line, o)::bigint * 16777216 + get_byte(line, o + 1) * 65536
                + get_byte(line, o + 2) * 256 + get_byte(line, o + 3);
            o := o + 4;
        END LOOP;
    END CASE;
    RETURN vals;
END;
$function$
;
