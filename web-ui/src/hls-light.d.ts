// hls.js ships one type file for its full and light builds.
declare module 'hls.js/light' {
  export { default } from 'hls.js';
}
