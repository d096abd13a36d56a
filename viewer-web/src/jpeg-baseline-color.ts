// The DICOM image loader decodes 8-bit colour JPEG baseline frames (US clips, colour
// photographs) on the main thread by putting the JPEG into an <img> as a `data:` URL,
// which the archive's Content-Security-Policy (`img-src 'self' blob:`) blocks: the frame
// never decodes. vite.config.ts puts this module in place of the loader's
// `decodeJPEGBaseline8BitColor.js`: the same result, decoded from a Blob with
// createImageBitmap (no URL, nothing for the CSP to block).

interface ImageFrame {
  rows: number;
  columns: number;
  pixelData: Uint8Array;
  imageData?: ImageData;
  decodeTimeInMS?: number;
  smallestPixelValue?: number;
  largestPixelValue?: number;
  pixelDataLength?: number;
}

export default async function decodeJPEGBaseline8BitColor(
  imageFrame: ImageFrame,
  pixelData: Uint8Array,
  canvas: HTMLCanvasElement,
): Promise<ImageFrame> {
  const start = performance.now();
  const bitmap = await createImageBitmap(new Blob([pixelData as BlobPart], { type: 'image/jpeg' }), {
    colorSpaceConversion: 'none',
    premultiplyAlpha: 'none',
  });
  try {
    canvas.width = bitmap.width;
    canvas.height = bitmap.height;
    imageFrame.rows = bitmap.height;
    imageFrame.columns = bitmap.width;
    const context = canvas.getContext('2d', { willReadFrequently: true });
    if (!context) throw new Error('no 2D canvas to decode a JPEG image');
    context.drawImage(bitmap, 0, 0);
    const imageData = context.getImageData(0, 0, bitmap.width, bitmap.height);
    const pixels = new Uint8Array(imageData.data.buffer);
    let min = 255;
    let max = 0;
    for (let i = 0; i < pixels.length; i++) {
      const v = pixels[i];
      if (v < min) min = v;
      if (v > max) max = v;
    }
    imageFrame.pixelData = pixels;
    imageFrame.imageData = imageData;
    imageFrame.decodeTimeInMS = performance.now() - start;
    imageFrame.smallestPixelValue = min;
    imageFrame.largestPixelValue = max;
    imageFrame.pixelDataLength = pixels.length;
    return imageFrame;
  } finally {
    bitmap.close();
  }
}
