// Test fixture. Zones chosen for their oddities: half-hour DST, 45-minute offsets, midnight
// transitions (gaps and repeats), skipped days, negative DST, Ramadan DST.
export const TRICKY_ZONES = [
  'UTC',
  'Europe/Berlin',
  'America/New_York',
  'Australia/Lord_Howe',
  'Pacific/Apia',
  'Pacific/Kiritimati',
  'America/Havana',
  'America/Santiago',
  'America/Sao_Paulo',
  'America/St_Johns',
  'Asia/Kathmandu',
  'Asia/Tehran',
  'Pacific/Chatham',
  'Africa/Casablanca',
  'Europe/Dublin',
  'Asia/Beirut',
] as const;
