/*
 * civil.c - calendar dates as people type them, and Europe/Rome time (PROTOCOL.md, "Names
 * and values"). People read and type times in Italy's civil time; the wire and the stores
 * hold UTC milliseconds. Europe/Rome is computed here from the rule the EU has fixed since
 * 1996 (CET = UTC+1; CEST = UTC+2 from 01:00 UTC on the last Sunday of March to 01:00 UTC on
 * the last Sunday of October) rather than read from the tz database, so that every node and
 * every CLI turns a date into the same instant whatever the machine has installed. Times
 * before 1996 are shown by the same rule (patto holds none).
 */
#define _DEFAULT_SOURCE /* timegm */
#include "internal.h"

#include <string.h>
#include <time.h>

static bool digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

static int number(const char *s, size_t n)
{
    int v = 0;
    for (size_t i = 0; i < n; i++)
        v = v * 10 + (s[i] - '0');
    return v;
}

proto_err proto_date_parse(const char *s, size_t len, proto_date *out)
{
    if (s == NULL || out == NULL)
        return PROTO_EINVAL;
    if (len != 10 || s[4] != '-' || s[7] != '-' || !digits(s, 4) || !digits(s + 5, 2)
        || !digits(s + 8, 2))
        return PROTO_EVALUE;
    proto_date d = { number(s, 4), number(s + 5, 2), number(s + 8, 2) };
    if (d.year < PROTO_DATE_YEAR_MIN || d.year > PROTO_DATE_YEAR_MAX || d.month < 1 || d.month > 12
        || d.day < 1 || d.day > 31)
        return PROTO_EVALUE;
    /* A day that does not exist (2026-02-31) comes back from timegm as another day. */
    struct tm tm = { .tm_year = d.year - 1900, .tm_mon = d.month - 1, .tm_mday = d.day };
    time_t t = timegm(&tm);
    struct tm back;
    if (gmtime_r(&t, &back) == NULL || back.tm_mday != d.day || back.tm_mon != d.month - 1)
        return PROTO_EVALUE;
    *out = d;
    return PROTO_OK;
}

/* 01:00 UTC on the last Sunday of month (1-based) of year, in seconds. */
static int64_t last_sunday_1am(int year, int month)
{
    struct tm tm = { .tm_year = year - 1900, .tm_mon = month - 1, .tm_mday = 31, .tm_hour = 1 };
    time_t t = timegm(&tm);
    struct tm w;
    gmtime_r(&t, &w);
    return (int64_t)t - (int64_t)w.tm_wday * 86400;
}

int proto_rome_offset_min(uint64_t utc_ms)
{
    time_t t = (time_t)(utc_ms / 1000);
    struct tm tm;
    if (gmtime_r(&t, &tm) == NULL)
        return 60;
    int year = tm.tm_year + 1900;
    int64_t s = (int64_t)t;
    return s >= last_sunday_1am(year, 3) && s < last_sunday_1am(year, 10) ? 120 : 60;
}

void proto_rome_civil(uint64_t utc_ms, proto_civil *out)
{
    int off = proto_rome_offset_min(utc_ms);
    time_t t = (time_t)(utc_ms / 1000) + (time_t)off * 60;
    struct tm tm;
    if (gmtime_r(&t, &tm) == NULL)
        memset(&tm, 0, sizeof(tm));
    out->year = tm.tm_year + 1900;
    out->month = tm.tm_mon + 1;
    out->day = tm.tm_mday;
    out->hour = tm.tm_hour;
    out->minute = tm.tm_min;
    out->second = tm.tm_sec;
    out->ms = (int)(utc_ms % 1000);
    out->offset_min = off;
}

uint64_t proto_rome_day_start_ms(const proto_date *d)
{
    struct tm tm = { .tm_year = d->year - 1900, .tm_mon = d->month - 1, .tm_mday = d->day };
    int64_t midnight_utc = (int64_t)timegm(&tm) * 1000;
    /* Local midnight is never inside a change of offset (they happen at 02:00 and 03:00). */
    int64_t guess = midnight_utc - 60 * 60000;
    int off = proto_rome_offset_min(guess > 0 ? (uint64_t)guess : 0);
    int64_t start = midnight_utc - (int64_t)off * 60000;
    return start > 0 ? (uint64_t)start : 0;
}

uint64_t proto_rome_day_end_ms(const proto_date *d)
{
    struct tm tm = { .tm_year = d->year - 1900, .tm_mon = d->month - 1, .tm_mday = d->day + 1 };
    time_t t = timegm(&tm); /* normalises the day after, across months and years */
    struct tm next;
    gmtime_r(&t, &next);
    proto_date after = { next.tm_year + 1900, next.tm_mon + 1, next.tm_mday };
    uint64_t start = proto_rome_day_start_ms(&after);
    return start > 0 ? start - 1 : 0; /* a day that ended before 1970: the epoch itself */
}
